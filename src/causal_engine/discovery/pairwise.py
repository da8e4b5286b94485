"""An amortised baseline for the causal PFN: a gradient-boosted classifier over hand-made pairwise features.

The PFN learns its own features from the prior; this baseline asks how far a fixed set of classical statistics
gets when a boosted tree model (LightGBM) learns, on the same prior, how to combine them into an edge
probability for every ordered pair i -> j. If the PFN does not beat it, the trunk is not earning its keep.

Features of the ordered pair (i, j), `pair_features` (names in `FEATURE_NAMES`), computed on two views of the
observational rows: `z` (each column standardised) and `g` (normal scores of the ranks, unchanged by any
strictly increasing transform of a column, so those features are monotone-invariant by construction):
- |correlation| and |partial correlation| from a shrunk precision matrix, and the rank of the latter within
  row i and column j (how strong this pair is among the node's candidates);
- conditional independence: the smallest first-order partial correlation min_k |rho_ij.k|;
- collider statistics: max_k |rho_ik.j| - |rho_ik| (conditioning on j creates dependence between i and some
  k: j is a collider, so i -> j) and the same with i and j swapped;
- node R² of i and of j given every other node (1 - 1 / P_jj of the shrunk correlation's inverse);
- direction scores on `z`: pairwise LiNGAM (Hyvärinen & Smith 2013, tanh and skewness likelihood-ratio
  approximations), additive-noise residual dependence of a cubic fit in both directions and its R², and the
  dependence between i and j's residual given all other nodes (independent of its parents, not of its children);
- interventional shifts (NaN when the data have none): the mean normal score of j's rows under do(i) in j's
  observational distribution and the same mean in z-units, both directions, and whether i / j were targeted;
- the table's size: log rows, nodes, nodes per row.

The direction scores read `z`, so the model sees the columns' scales and shapes, which a strictly increasing
transform changes. A model trained with `input: copula` (`scripts/train_pairwise.py --copula`,
`checkpoints/pairwise_copula.txt`) reads every table through `copula_table` first: each value replaced by the
normal score of its place among its column's observational values, as the PFN's copula features are, so all
its features, and its edges, are the same for any strictly increasing transform of a column. The pair of models
tells how much of the boosted model's edge ranking comes from the columns' scales and shapes.

The model is a LightGBM text file (`checkpoints/pairwise.txt`): loading it parses numbers, it never unpickles
or runs code. Its json sidecar says how it was trained (`scripts/train_pairwise.py`) and its `input`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import ndtri

from causal_engine.discovery.baselines import (
    GraphData,
    correlation,
    partial_correlation,
    shrunk_precision,
    split_graphs,
    standardise_columns,
)
from causal_engine.discovery.data import Prior, sample_graphs
from causal_engine.discovery.encoder import first_order_structure, row_rank
from causal_engine.errors import UserError
from causal_engine.graphs import predicted_edges

_VIEW_FEATURES = ("corr", "pcorr", "pcorr_rank_row", "pcorr_rank_col", "min_ci", "collider_j", "collider_i")
_VIEW_NODE = ("r2_i", "r2_j")
INPUTS = ("raw", "copula")  # what a model reads: the table as given, or `copula_table` of it
FEATURE_NAMES: tuple[str, ...] = (
    *(f"{view}_{name}" for view in ("z", "g") for name in (*_VIEW_FEATURES, *_VIEW_NODE)),
    "lingam_tanh",
    "lingam_skew",
    "anm_dep_ij",
    "anm_dep_ji",
    "anm_r2_ij",
    "anm_r2_ji",
    "resid_dep_ij",
    "resid_dep_ji",
    "shift_g_ij",
    "shift_g_ji",
    "shift_z_ij",
    "shift_z_ji",
    "targeted_i",
    "targeted_j",
    "log_rows",
    "nodes",
    "nodes_per_row",
)


def normal_scores(x: np.ndarray) -> np.ndarray:
    """Gaussian copula view [n, d]: Phi^-1 of each column's mid-rank / n (ties get their mean rank)."""
    n = x.shape[0]
    order = x.argsort(0, kind="stable")
    ranks = np.empty_like(order, dtype=float)
    np.put_along_axis(ranks, order, np.arange(n, dtype=float)[:, None].repeat(x.shape[1], 1), 0)
    # Mean rank of tied values, so a transform that merges nothing changes nothing and ties are symmetric.
    for j in range(x.shape[1]):
        col = x[:, j]
        if np.unique(col).size < n:
            _, inverse = np.unique(col, return_inverse=True)
            ranks[:, j] = (np.bincount(inverse, ranks[:, j]) / np.bincount(inverse))[inverse]
    return ndtri((ranks + 0.5) / n)


def copula_table(g: GraphData) -> GraphData:
    """Every value of the table (observational and interventional rows) as Phi^-1((n_below + n_at_or_below + 1) /
    (2S + 2)) among its column's S observational values: the PFN's copula score (ties share their mid-rank, an
    observation of rank r without ties scores Phi^-1((r + 1) / (S + 1))). Depends on the ranks only."""
    ordered = np.sort(g.observational, 0)  # [S, d]
    s, d = ordered.shape

    def scores(x: np.ndarray) -> np.ndarray:  # [n, d] -> [n, d]
        counts = [
            np.searchsorted(ordered[:, j], x[:, j], "left") + np.searchsorted(ordered[:, j], x[:, j], "right")
            for j in range(d)
        ]
        return ndtri((np.stack(counts, 1) + 1) / (2 * s + 2))

    return GraphData(scores(g.observational), [(t, scores(x)) for t, x in g.regimes], g.adjacency)


def _row_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each entry within its row among the off-diagonal ones, on the scale the shipped booster was trained
    on: the diagonal counts as the row's smallest, so the smallest entry is 1 / (d - 1) and the largest 1.

    The rank itself is the encoder's (`encoder.row_rank`, 0 for the smallest, 1 for the largest, over d - 2)."""
    d = values.shape[0]
    rank = row_rank(torch.from_numpy(values)[None], torch.ones(1, d, dtype=torch.float64))[0].numpy()
    return (rank * max(d - 2, 1) + 1) * (1 - np.eye(d)) / max(d - 1, 1)


def _view_features(x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The per-view pair features [d, d] each and node R² (of i and of j) for one view of the rows."""
    d = x.shape[1]
    corr = correlation(x)
    pcorr = np.abs(partial_correlation(corr))
    min_ci, collider_j = (t[0].numpy() for t in first_order_structure(torch.from_numpy(corr)[None], torch.ones(1, d)))
    r2 = 1 - 1 / np.diag(shrunk_precision(corr))  # [d]
    pair = [np.abs(corr), pcorr, _row_rank(pcorr), _row_rank(pcorr.T).T, min_ci, collider_j, collider_j.T]
    return pair, [np.broadcast_to(r2[:, None], (d, d)), np.broadcast_to(r2[None, :], (d, d))]


def _dependence(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A cheap nonlinear dependence of column a[:, i] and r[:, i, j] (or r[:, j]) : mean |corr| of (a², r²),
    (|a|, |r|) and (a, r²), all zero when a and r are independent."""
    pairs = ((a**2, r**2), (np.abs(a), np.abs(r)), (a, r**2))
    total = 0.0
    for f, h in pairs:
        f = standardise_columns(f)
        h = standardise_columns(h.reshape(h.shape[0], -1)).reshape(h.shape)
        total = total + np.abs(np.einsum("ni,nij->ij", f, h) if h.ndim == 3 else f.T @ h) / a.shape[0]
    return total / len(pairs)


def _direction_features(z: np.ndarray, corr: np.ndarray) -> list[np.ndarray]:
    """LiNGAM tanh and skew scores, cubic additive-noise dependence and R² both ways, residual dependence."""
    n = z.shape[0]
    lingam_tanh = corr * (z.T @ np.tanh(z) - np.tanh(z).T @ z) / n  # positive favours i -> j
    s = z * np.sign((z**3).mean(0) + 1e-12)  # each column's skewness made positive
    lingam_skew = corr * ((s**2).T @ s - s.T @ s**2) / n
    zc = np.clip(z, -5, 5)
    design = np.stack([np.ones_like(zc), zc, zc**2, zc**3], -1)  # [n, d, 4]
    # Normal equations batched over the regressor i (one 4 x 4 solve each) instead of d separate lstsq calls.
    gram = np.einsum("nia,nib->iab", design, design) + 1e-6 * np.eye(4)  # [d, 4, 4]
    rhs = np.einsum("nia,nj->iaj", design, z)  # [d, 4, d]
    beta = np.linalg.solve(gram, rhs)  # [d, 4, d]: z_j ~ cubic(z_i)
    resid = z[:, None, :] - np.einsum("nia,iaj->nij", design, beta)  # [n, i, j]
    anm_dep = _dependence(z, resid)  # [i, j]: dependence of z_i and the residual of j given cubic(z_i)
    anm_r2 = 1 - (resid**2).mean(0)
    precision = shrunk_precision(corr)
    resid_all = z @ precision / np.diag(precision)  # [n, d]: residual of j given all other nodes (up to scale)
    resid_dep = _dependence(z, resid_all)
    return [lingam_tanh, lingam_skew, anm_dep, anm_dep.T, anm_r2, anm_r2.T, resid_dep, resid_dep.T]


def _interventional_features(g: GraphData) -> list[np.ndarray]:
    """Shift of j under regimes that target i and not j (mean normal score in j's observational ECDF and mean
    z-score), both directions, and whether i / j were ever targeted; NaN where no regime says."""
    obs = g.observational
    d = obs.shape[1]
    mean, std = obs.mean(0), np.maximum(obs.std(0), 1e-12)
    sorted_obs = np.sort(obs, 0)
    shift_g = np.full((d, d), np.nan)
    shift_z = np.full((d, d), np.nan)
    targeted = np.zeros(d, dtype=bool)
    for targets, x in g.regimes:
        if len(x) == 0:
            continue
        ecdf = np.stack([np.searchsorted(sorted_obs[:, j], x[:, j], side="right") for j in range(d)], 1)
        score = ndtri((ecdf + 0.5) / (obs.shape[0] + 1)).mean(0)  # [d]
        zmean = ((x - mean) / std).mean(0)
        for i in targets:
            targeted[i] = True
            keep = np.ones(d, dtype=bool)
            keep[targets] = False
            shift_g[i, keep] = np.fmax(shift_g[i, keep], np.abs(score[keep]))
            shift_z[i, keep] = np.fmax(shift_z[i, keep], np.abs(zmean[keep]))
    t_i = np.broadcast_to(targeted[:, None], (d, d)).astype(float)
    return [shift_g, shift_g.T, shift_z, shift_z.T, t_i, t_i.T]


def pair_features(g: GraphData) -> np.ndarray:
    """Features of every ordered pair of one table, [d, d, F] in `FEATURE_NAMES` order (diagonal included)."""
    x = g.observational
    n, d = x.shape
    z = standardise_columns(x)
    pair_z, node_z = _view_features(z)
    pair_g, node_g = _view_features(normal_scores(x))
    size = [np.full((d, d), v) for v in (np.log(n), float(d), d / n)]
    features = [
        *pair_z,
        *node_z,
        *pair_g,
        *node_g,
        *_direction_features(z, correlation(z)),
        *_interventional_features(g),
        *size,
    ]
    return np.stack(features, -1)


def off_diagonal(features: np.ndarray) -> np.ndarray:
    """The off-diagonal rows of a [d, d, F] (or [d, d]) array, row-major: [d (d - 1), F]."""
    d = features.shape[0]
    return features[~np.eye(d, dtype=bool)]


@dataclass
class PairwiseModel:
    """A trained boosted edge classifier: LightGBM booster plus the threshold of its predicted edges
    (`graphs.predicted_edges`, as for the PFN)."""

    booster: Any  # lightgbm.Booster
    threshold: float = 0.5
    copula: bool = False  # read every table through `copula_table` (the sidecar's "input": "copula")

    @classmethod
    def load(cls, path: str | Path, threshold: float = 0.5) -> PairwiseModel:
        """Read a LightGBM text model (numbers only; nothing is unpickled or executed) and, from its json
        sidecar, which input it was trained on."""
        import lightgbm

        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"pairwise model: no file at {file}; train one with `python scripts/train_pairwise.py`.")
        booster = lightgbm.Booster(model_file=str(file))
        if tuple(booster.feature_name()) != FEATURE_NAMES:
            raise UserError(
                f"pairwise model: {file} was trained on other features ({len(booster.feature_name())} names); "
                f"retrain it with `python scripts/train_pairwise.py`."
            )
        info = file.with_suffix(".json")
        source = json.loads(info.read_text()).get("input", "raw") if info.is_file() else "raw"
        if source not in INPUTS:
            raise UserError(f"pairwise model: {info} says input {source!r}; one of {INPUTS} is expected.")
        return cls(booster, threshold, copula=source == "copula")

    def edge_probabilities(self, g: GraphData) -> np.ndarray:
        """P(i -> j) for every ordered pair [d, d], 0 on the diagonal."""
        d = g.observational.shape[1]
        out = np.zeros((d, d))
        features = pair_features(copula_table(g) if self.copula else g)
        out[~np.eye(d, dtype=bool)] = self.booster.predict(off_diagonal(features), num_threads=1)
        return out

    def __call__(self, g: GraphData) -> tuple[np.ndarray, np.ndarray]:
        """The EDGE_METHODS interface: (scores [d, d], predicted edges [d, d] bool)."""
        p = self.edge_probabilities(g)
        return p, predicted_edges(torch.from_numpy(p), self.threshold).numpy()


def write_sidecar(path: Path, info: dict[str, Any]) -> None:
    """The json beside a model file: how it was trained and on which features."""
    path.write_text(json.dumps({**info, "features": list(FEATURE_NAMES)}, indent=2) + "\n")


def prior_pairs(
    prior: Prior,
    *,
    node_range: tuple[int, int],
    pair_fraction: float,
    cpu_seconds: float,
    seed: int,
    batch: int = 8,
    copula: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Training rows drawn from the SCM prior for `cpu_seconds` of this process's CPU time (not wall-clock, so
    a busy machine gets the same amount of data, later): (features [N, F] float32, labels [N], graphs).

    Each draw is `batch` graphs of one size uniform in `node_range`; row counts, interventions and the
    observational-only share are the prior's own. A uniform random `pair_fraction` of each graph's ordered
    pairs is kept, so more graphs fit in memory and the base rate (hence the calibration of the probabilities)
    is unchanged. `copula`: the features of `copula_table(g)`, for a model with that input.
    """
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    features, labels, graphs = [], [], 0
    deadline = time.process_time() + cpu_seconds
    while time.process_time() < deadline:
        d = int(rng.integers(node_range[0], node_range[1] + 1))
        for g in split_graphs(sample_graphs(batch, d, prior, generator)):
            keep = rng.random(d * (d - 1)) < pair_fraction
            features.append(off_diagonal(pair_features(copula_table(g) if copula else g))[keep].astype(np.float32))
            labels.append(off_diagonal(g.adjacency)[keep].astype(np.int8))
            graphs += 1
    return np.concatenate(features), np.concatenate(labels), graphs


def fit_booster(
    x: np.ndarray, y: np.ndarray, *, rounds: int, seed: int, valid_share: float = 0.1, **params: Any
) -> tuple[Any, dict[str, float]]:
    """A LightGBM binary classifier on one thread, early-stopped on a held-out share of the rows.

    Returns the booster and {best_iteration, valid_auroc, valid_logloss}.
    """
    import lightgbm
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    valid = rng.random(len(y)) < valid_share
    train_set = lightgbm.Dataset(x[~valid], y[~valid], feature_name=list(FEATURE_NAMES), free_raw_data=True)
    valid_set = lightgbm.Dataset(x[valid], y[valid], reference=train_set)
    settings = {
        "objective": "binary",
        "metric": "binary_logloss",
        "num_threads": 1,
        "seed": seed,
        "verbosity": -1,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.8,
        **params,
    }
    booster = lightgbm.train(
        settings,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        callbacks=[lightgbm.early_stopping(30, verbose=False)],
    )
    p = booster.predict(x[valid], num_threads=1)
    logloss = float(-np.mean(y[valid] * np.log(p + 1e-12) + (1 - y[valid]) * np.log(1 - p + 1e-12)))
    return booster, {
        "best_iteration": int(booster.best_iteration),
        "valid_auroc": float(roc_auc_score(y[valid], p)),
        "valid_logloss": logloss,
    }
