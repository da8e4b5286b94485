"""Group effects and the CATE's best linear projection: DoubleML agrees, one group is the ATE, GATE CIs cover."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from causal_engine.dml.heterogeneity import blp, gate, quantile_groups
from causal_engine.dml.scores import estimate
from causal_engine.errors import UserError

from .conftest import doubleml_with, linear_out_of_fold

K = 3


def _simulate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """τ(x) = 1 + 0.5·x1 with confounding through x1; every nuisance is linear (or logistic) in x."""
    x = rng.normal(size=(n, 2))
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.5 * x[:, 0] - 0.3 * x[:, 1])))).astype(float)
    y = (1 + 0.5 * x[:, 0]) * d + x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n)
    return x, d, y


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    x, d, y = _simulate(rng, 500)
    folds = list(KFold(K, shuffle=True, random_state=1).split(x))
    groups = np.where(x[:, 0] > 0.5, "high", np.where(x[:, 0] < -0.5, "low", "mid"))
    return x, d, y, folds, linear_out_of_fold(x, d, y, folds), groups


def _doubleml(score: str, x, d, y, folds, preds):
    frame = pd.DataFrame(x, columns=["x1", "x2"]).assign(y=y, d=d)
    return doubleml_with(score, frame, folds, preds)[0]


def _assert_same_coefficients(ours, theirs) -> None:
    """Our LinearEffects equal DoubleML's coefficients, standard errors and 95 % intervals."""
    np.testing.assert_allclose(ours.estimate, theirs.coef, rtol=1e-9)
    np.testing.assert_allclose(ours.se, theirs.se, rtol=1e-9)
    ci = theirs.confint(level=0.95).to_numpy()
    np.testing.assert_allclose(np.column_stack([ours.ci_low, ours.ci_high]), ci[:, [0, 2]], rtol=1e-9)


@pytest.mark.parametrize("score", ["ate", "plr"])
def test_doubleml_gate_reproduces_our_group_effects(fitted, score):
    x, d, y, folds, preds, groups = fitted
    theirs = _doubleml(score, x, d, y, folds, preds).gate(pd.DataFrame({"g": groups}))
    ours = gate(score, y, d, groups, [preds])
    assert ours.names == ("high", "low", "mid") and sum(ours.counts) == len(y)
    _assert_same_coefficients(ours, theirs)


@pytest.mark.parametrize("score", ["ate", "plr"])
def test_doubleml_cate_reproduces_our_best_linear_projection(fitted, score):
    x, d, y, folds, preds, _ = fitted
    basis = pd.DataFrame({"const": 1.0, "x1": x[:, 0], "x2": x[:, 1]})
    theirs = _doubleml(score, x, d, y, folds, preds).cate(basis)
    ours = blp(score, y, d, x, [preds], names=["x1", "x2"])
    assert ours.names == ("intercept", "x1", "x2")
    _assert_same_coefficients(ours, theirs)


@pytest.mark.parametrize("score", ["ate", "plr"])
def test_one_group_holding_every_row_is_the_average_effect(fitted, score):
    _, d, y, _, preds, _ = fitted
    one = gate(score, y, d, np.zeros(len(y), dtype=int), [preds])
    whole = estimate(score, y, d, g0=preds["g0"], g1=preds["g1"], m=preds["m"], ell=preds["ell"])
    np.testing.assert_allclose([one.estimate[0], one.se[0]], [whole.estimate, whole.se], rtol=1e-12)
    intercept_only = blp(score, y, d, np.empty((len(y), 0)), [preds])
    np.testing.assert_allclose(intercept_only.estimate, one.estimate, rtol=1e-12)


def test_repetitions_aggregate_like_the_main_estimate(fitted):
    x, d, y, _, preds, groups = fitted
    other = linear_out_of_fold(x, d, y, list(KFold(K, shuffle=True, random_state=2).split(x)))
    both = gate("ate", y, d, groups, [preds, other, preds])
    first, second = gate("ate", y, d, groups, [preds]), gate("ate", y, d, groups, [other])
    np.testing.assert_array_equal(both.estimate, first.estimate)  # the median of (a, b, a) is a
    spread = np.sqrt(np.median([first.se**2, second.se**2 + (second.estimate - first.estimate) ** 2, first.se**2], 0))
    np.testing.assert_allclose(both.se, spread, rtol=1e-12)
    assert both.n_rep == 3


def test_effects_write_a_csv_and_flat_metrics(fitted, tmp_path):
    _, d, y, _, preds, groups = fitted
    effects = gate("ate", y, d, groups, [preds])
    frame = pd.read_csv(effects.write_csv(tmp_path / "out" / "gate.csv"))
    assert list(frame.columns) == ["name", "estimate", "se", "ci_low", "ci_high", "n"]
    np.testing.assert_allclose(frame["estimate"], effects.estimate, rtol=1e-12)
    metrics = effects.as_metrics()
    assert metrics["dml/gate/low"] == effects.estimate[1] and metrics["dml/gate/mid/ci_high"] == effects.ci_high[2]


def test_att_and_bad_inputs_are_refused_with_the_fix(fitted):
    x, d, y, _, preds, groups = fitted
    with pytest.raises(UserError, match="dml.score=ate"):
        gate("att", y, d, groups, [preds])
    with pytest.raises(UserError, match="single row"):
        gate("ate", y, d, np.r_[["lonely"], groups[1:]], [preds])
    with pytest.raises(UserError, match="collinear"):
        blp("ate", y, d, np.column_stack([x, x[:, 0]]), [preds])


def test_gate_confidence_intervals_cover_the_true_group_effects():
    """Seeded simulation: 150 replicates × 2 groups (x1 > 0 or not), cross-fitted linear nuisances.

    True GATEs are 1 ± 0.5·E[x1 | x1 > 0] = 1 ± 0.5·√(2/π). Coverage pooled over the 300 intervals must be
    within 3 binomial SEs of 0.95 (SE = √(0.95·0.05/300) = 0.0126), and the BLP slope's 150 intervals too.
    """
    rng = np.random.default_rng(20)
    reps, n = 150, 500
    truth = np.array([1 - 0.5 * np.sqrt(2 / np.pi), 1 + 0.5 * np.sqrt(2 / np.pi)])  # groups False, True
    gate_hits, slope_hits = [], []
    for _ in range(reps):
        x, d, y = _simulate(rng, n)
        folds = list(KFold(2, shuffle=True, random_state=int(rng.integers(1 << 31))).split(x))
        preds = linear_out_of_fold(x, d, y, folds)
        effects = gate("ate", y, d, x[:, 0] > 0, [preds])
        gate_hits.extend((effects.ci_low <= truth) & (truth <= effects.ci_high))
        slope = blp("ate", y, d, x[:, 0], [preds])
        slope_hits.append(slope.ci_low[1] <= 0.5 <= slope.ci_high[1])
    for hits in (gate_hits, slope_hits):
        se = np.sqrt(0.95 * 0.05 / len(hits))
        assert abs(np.mean(hits) - 0.95) <= 3 * se, (np.mean(hits), len(hits))


def test_group_effects_figure_has_one_row_per_group(fitted, tmp_path):
    from causal_engine.plots import group_effects_figure, save_figure

    _, d, y, _, preds, groups = fitted
    effects = gate("ate", y, d, groups, [preds])
    fig = group_effects_figure(effects.names, effects.estimate, effects.ci_low, effects.ci_high, overall=1.0)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(effects.names)
    assert save_figure(fig, tmp_path / "gate.png").stat().st_size > 0


def test_quantile_groups_split_at_the_sample_quantiles_and_sort_in_order():
    labels, cuts = quantile_groups(np.arange(9.0)[::-1], 3)
    np.testing.assert_allclose(cuts, [8 / 3, 16 / 3])
    assert list(labels) == ["q3"] * 3 + ["q2"] * 3 + ["q1"] * 3
    labels, cuts = quantile_groups(np.array([0.0, 1.0, 1.0, 2.0]), 2)
    assert list(cuts) == [1.0] and list(labels) == ["q1", "q2", "q2", "q2"]  # a value on a cut goes up
    assert quantile_groups(np.arange(20.0), 10)[0][-1] == "q10" and quantile_groups(np.arange(20.0), 10)[0][0] == "q01"
    with pytest.raises(UserError, match="dml.gate.quantiles=1"):
        quantile_groups(np.arange(4.0), 1)
