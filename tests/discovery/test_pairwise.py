"""The boosted pairwise baseline: feature maths on hand cases, and its model file's round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ndtri

from causal_engine.discovery import pairwise as P
from causal_engine.discovery.baselines import GraphData, abs_partial_corr, correlation, partial_correlation
from causal_engine.discovery.encoder import first_order_structure
from causal_engine.errors import UserError
from causal_engine.graphs import predicted_edges
from causal_engine.scm.prior import BroadPrior

pytest.importorskip("lightgbm")
NAMES = list(P.FEATURE_NAMES)


def collider(n: int = 4000, seed: int = 0) -> GraphData:
    """X0 -> X2 <- X1 (X2 = X0 + X1 + N(0, 0.5²)), plus do(X0 ~ 3 + N(0, 0.1²))."""
    rng = np.random.default_rng(seed)

    def sim(m: int, do0: float | None) -> np.ndarray:
        x0 = rng.normal(size=m) if do0 is None else do0 + 0.1 * rng.normal(size=m)
        x1 = rng.normal(size=m)
        return np.stack([x0, x1, x0 + x1 + 0.5 * rng.normal(size=m)], 1)

    adjacency = np.zeros((3, 3))
    adjacency[0, 2] = adjacency[1, 2] = 1
    return GraphData(sim(n, None), [([0], sim(n // 2, 3.0))], adjacency)


def feature(f: np.ndarray, name: str) -> np.ndarray:
    return f[..., NAMES.index(name)]


def test_partial_correlation_without_shrinkage_is_the_textbook_formula() -> None:
    r01, r02, r12 = 0.3, 0.6, -0.4
    corr = np.array([[1, r01, r02], [r01, 1, r12], [r02, r12, 1]])
    expected = (r01 - r02 * r12) / np.sqrt((1 - r02**2) * (1 - r12**2))
    pc = partial_correlation(corr, shrinkage=0.0)
    assert pc[0, 1] == pytest.approx(expected, rel=1e-12) and pc[1, 0] == pytest.approx(expected, rel=1e-12)
    assert np.diag(pc).tolist() == [0.0, 0.0, 0.0]
    # with three nodes, the smallest first-order partial correlation of (0, 1) is |rho_01.2|, the same number
    min_ci, _ = first_order_structure(torch.from_numpy(corr)[None], torch.ones(1, 3))
    assert float(min_ci[0, 0, 1]) == pytest.approx(abs(expected), rel=1e-12)


def test_normal_scores_ignore_strictly_increasing_transforms_and_average_ties() -> None:
    x = np.random.default_rng(1).normal(size=(50, 2))
    assert np.array_equal(P.normal_scores(x), P.normal_scores(np.exp(3 * x) + 7))
    tied = P.normal_scores(np.array([[1.0], [2.0], [2.0], [3.0]]))[:, 0]
    assert tied[1] == tied[2] and tied[0] == -tied[3]
    assert tied[1] == pytest.approx(0.0, abs=1e-12)  # ranks 1 and 2 of 0..3 average to the middle


@pytest.mark.parametrize("d", [2, 3, 7])
def test_row_rank_keeps_the_scale_the_booster_was_trained_on(d: int) -> None:
    # Trained on: the off-diagonal entries of a row ranked 1 .. d - 1 (the diagonal ranks 0), over d - 1.
    values = np.abs(np.random.default_rng(d).normal(size=(d, d)))
    masked = values.copy()
    np.fill_diagonal(masked, -np.inf)
    assert np.allclose(P._row_rank(values), masked.argsort(1).argsort(1) / (d - 1), atol=1e-12)


def test_collider_statistics_point_into_the_collider() -> None:
    f = P.pair_features(collider())
    # population values: |rho_01.2| - |rho_01| = 0.8 - 0 (into X2), |rho_21.0| - |rho_21| = 0.894 - 0.667 = 0.228;
    # n = 4000 gives an SE near 0.016, so 0.05 is three SEs.
    for view in ("z", "g"):
        col = feature(f, f"{view}_collider_j")
        assert col[0, 2] == pytest.approx(0.8, abs=0.05) and col[1, 2] == pytest.approx(0.8, abs=0.05)
        assert col[2, 0] == pytest.approx(0.228, abs=0.05) and col[2, 1] == pytest.approx(0.228, abs=0.05)
        assert np.array_equal(feature(f, f"{view}_collider_i"), col.T)
    # X0 and X1 are marginally independent, but the only node to condition on is their collider X2, which makes
    # them dependent: the first-order statistic min_k |rho_01.k| is |rho_01.2| = 0.8 while |rho_01| is 0.
    assert feature(f, "z_min_ci")[0, 1] == pytest.approx(0.8, abs=0.05)
    assert feature(f, "z_corr")[0, 1] == pytest.approx(0.0, abs=0.05)


def test_direction_scores_are_antisymmetric_and_shifts_follow_the_intervention() -> None:
    f = P.pair_features(collider())
    for name in ("lingam_tanh", "lingam_skew"):
        assert np.allclose(feature(f, name), -feature(f, name).T)
    for a, b in (("anm_dep_ij", "anm_dep_ji"), ("anm_r2_ij", "anm_r2_ji"), ("resid_dep_ij", "resid_dep_ji")):
        assert np.array_equal(feature(f, b), feature(f, a).T)
    shift = feature(f, "shift_z_ij")
    # do(X0 = 3): X2 moves by 3 / 1.5 = 2 SDs, X1 not at all (SE of a mean of 2000 rows ~ 0.022)
    assert shift[0, 2] == pytest.approx(2.0, abs=0.1) and shift[0, 1] == pytest.approx(0.0, abs=0.1)
    assert np.isnan(shift[1:]).all()  # X1 and X2 were never targeted
    assert feature(f, "targeted_i")[0].tolist() == [1.0, 1.0, 1.0] and feature(f, "targeted_j")[:, 0].sum() == 3


def test_copula_features_are_unchanged_by_a_monotone_transform() -> None:
    g = collider(n=500)
    logged = GraphData(np.log(g.observational - g.observational.min(0) + 1), [], g.adjacency)
    a, b = P.pair_features(GraphData(g.observational, [], g.adjacency)), P.pair_features(logged)
    for name in NAMES:
        if name.startswith("g_"):
            assert np.allclose(feature(a, name), feature(b, name), atol=1e-12), name


def test_abs_partial_corr_baseline_scores_the_skeleton() -> None:
    scores, pred = abs_partial_corr(collider())
    pc = np.abs(partial_correlation(correlation(collider().observational)))
    assert np.array_equal(scores, pc) and pred[0, 2] and pred[2, 1] and pred[0, 1]  # pcorr(0, 1 | 2) = 0.8


def test_model_file_round_trip_is_text_and_predicts_the_same(tmp_path) -> None:
    prior = BroadPrior(num_obs=(40, 80))
    x, y, graphs = P.prior_pairs(prior, node_range=(4, 6), pair_fraction=1.0, cpu_seconds=0.5, seed=0)
    assert graphs >= 8 and x.shape == (len(y), len(NAMES)) and set(np.unique(y)) <= {0, 1}
    booster, valid = P.fit_booster(x, y, rounds=5, seed=0, min_data_in_leaf=5)
    path = tmp_path / "pairwise.txt"
    booster.save_model(str(path))
    assert path.read_text().startswith("tree")  # a LightGBM text model: numbers, no pickled objects
    model = P.PairwiseModel.load(path)
    g = collider(n=200)
    probs = model.edge_probabilities(g)
    expected = booster.predict(P.off_diagonal(P.pair_features(g)))
    assert np.allclose(probs[~np.eye(3, dtype=bool)], expected, rtol=1e-12) and np.diag(probs).tolist() == [0, 0, 0]
    scores, pred = model(g)
    assert np.array_equal(pred, predicted_edges(torch.from_numpy(scores)).numpy())
    assert 0.0 <= valid["valid_auroc"] <= 1.0


def test_a_model_on_other_features_or_no_file_is_refused(tmp_path) -> None:
    import lightgbm

    rng = np.random.default_rng(0)
    other = lightgbm.train(
        {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 2},
        lightgbm.Dataset(rng.normal(size=(40, 3)), rng.integers(0, 2, 40)),
        num_boost_round=2,
    )
    other.save_model(str(tmp_path / "other.txt"))
    with pytest.raises(UserError, match="other features"):
        P.PairwiseModel.load(tmp_path / "other.txt")
    with pytest.raises(UserError, match="train_pairwise"):
        P.PairwiseModel.load(tmp_path / "missing.txt")


def test_copula_table_scores_ranks_and_ties_like_the_encoder() -> None:
    obs = np.array([[3.0, 1.0], [1.0, 1.0], [2.0, 5.0], [9.0, 7.0]])  # column 1 ties two rows
    g = P.copula_table(GraphData(obs, [([0], np.array([[0.5, 1.0], [2.0, 8.0]]))], np.zeros((2, 2))))
    assert np.allclose(g.observational[:, 0], ndtri(np.array([3, 1, 2, 4]) / 5))  # rank r -> (r + 1) / (S + 1)
    assert np.allclose(g.observational[:, 1], ndtri(np.array([1.5, 1.5, 3, 4]) / 5))  # a tie shares its mid-rank
    # Between observations, k below: (k + 1/2) / (S + 1); equal to one: that observation's score.
    assert np.allclose(g.regimes[0][1], ndtri(np.array([[0.5, 1.5], [2, 4.5]]) / 5))


def test_a_copula_input_model_gives_the_same_edges_under_monotone_transforms(tmp_path) -> None:
    prior = BroadPrior(num_obs=(40, 80))
    x, y, _ = P.prior_pairs(prior, node_range=(4, 6), pair_fraction=1.0, cpu_seconds=0.5, seed=0, copula=True)
    booster, _ = P.fit_booster(x, y, rounds=5, seed=0, min_data_in_leaf=5)
    path = tmp_path / "pairwise_copula.txt"
    booster.save_model(str(path))
    P.write_sidecar(path.with_suffix(".json"), {"input": "copula"})
    model = P.PairwiseModel.load(path)
    g = collider(n=300)
    cubed = GraphData(g.observational**3, [(t, v**3) for t, v in g.regimes], g.adjacency)
    assert model.copula and np.array_equal(model.edge_probabilities(g), model.edge_probabilities(cubed))
    raw = P.PairwiseModel(booster)  # the same trees on the raw table see the cube
    assert not np.array_equal(raw.edge_probabilities(g), raw.edge_probabilities(cubed))
    P.write_sidecar(path.with_suffix(".json"), {"input": "ranks"})
    with pytest.raises(UserError, match="input 'ranks'"):
        P.PairwiseModel.load(path)
