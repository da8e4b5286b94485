"""Classical baselines on the PFN's test graphs: structure (PC, GES, GIES, NOTEARS, |corr|, |partial corr|,
empty) and deltas.

Every structure method maps one graph's data to (edge scores [d, d], predicted edges [d, d] bool), so one
benchmark loop scores them all with the same metrics. Equivalence-class outputs (PC, GES, GIES return
CPDAGs) count an undirected edge i - j as both i -> j and j -> i: SHD then charges it 1 when the truth has
either direction (the pair's state differs) and AUROC sees 0/1 scores. Methods that need observational
data only (PC, GES, NOTEARS, |corr|) ignore the regimes; GIES uses them.

The packages (causal-learn for PC and GES, `gies` for GIES) are the `baselines` extra and imported lazily.
Delta baselines work in observational z-units like the PFN: `zero_delta` predicts no change, and
`mean_shift_delta` predicts, for do(i = v), each variable's mean shift in the regimes that intervened on i
(the regime with the nearest value), i.e. the average treatment effect instead of the unit's own change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.encoder import standardise
from causal_engine.errors import require_extra


@dataclass
class GraphData:
    """One graph's real nodes: observational samples, interventional regimes (targets, samples), truth."""

    observational: np.ndarray  # [S, d]
    regimes: list[tuple[list[int], np.ndarray]]  # (target indices, samples [n, d])
    adjacency: np.ndarray  # [d, d]


def split_graphs(batch: DiscoveryBatch) -> list[GraphData]:
    """The graphs of a padded batch, cut to their real nodes and real regimes."""
    out = []
    for b in range(batch.num_graphs):
        d = int(batch.node_mask[b].sum())
        regimes = []
        for r in torch.nonzero(batch.regime_mask[b]).flatten().tolist():
            rows = batch.int_sample_mask[b, r]
            targets = torch.nonzero(batch.regime_targets[b, r, :d]).flatten().tolist()
            regimes.append((targets, batch.interventional[b, r, rows, :d].double().numpy()))
        out.append(
            GraphData(batch.observational[b, :, :d].double().numpy(), regimes, batch.adjacency[b, :d, :d].numpy())
        )
    return out


SHRINKAGE = 0.1


def standardise_columns(x: np.ndarray) -> np.ndarray:
    """Each column centred and scaled to unit standard deviation (constant columns stay 0)."""
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)


def correlation(x: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns [d, d]; a constant column correlates 0 with everything."""
    z = standardise_columns(x)
    c = z.T @ z / x.shape[0]
    np.fill_diagonal(c, 1.0)
    return np.clip(c, -1.0, 1.0)


def shrunk_precision(corr: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """Inverse of (1 - shrinkage) C + shrinkage I: well defined even with more nodes than rows."""
    d = corr.shape[0]
    return np.linalg.inv((1 - shrinkage) * corr + shrinkage * np.eye(d))


def partial_correlation(corr: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """Partial correlation of each pair given all other nodes, -P_ij / sqrt(P_ii P_jj), from the shrunk
    precision P; the diagonal is 0."""
    p = shrunk_precision(corr, shrinkage)
    scale = np.sqrt(np.diag(p))
    out = -p / scale[:, None] / scale[None, :]
    np.fill_diagonal(out, 0.0)
    return out


def _cpdag_to_edges(graph: np.ndarray) -> np.ndarray:
    """causal-learn's GeneralGraph matrix (G[j, i] = 1, G[i, j] = -1 for i -> j) -> i -> j 0/1 matrix."""
    tail_head = (graph == -1) & (graph.T == 1)  # i -> j
    undirected = (graph == -1) & (graph.T == -1)
    bidirected = (graph == 1) & (graph.T == 1)
    return tail_head | undirected | bidirected


def pc(g: GraphData, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """PC (causal-learn) with Fisher-z tests on the observational data."""
    require_extra("PC", "causallearn")
    from causallearn.search.ConstraintBased.PC import pc as cl_pc

    graph = cl_pc(standardise_columns(g.observational), alpha=alpha, indep_test="fisherz", show_progress=False).G.graph
    edges = _cpdag_to_edges(graph)
    return edges.astype(float), edges


def ges(g: GraphData) -> tuple[np.ndarray, np.ndarray]:
    """GES (causal-learn) with the Gaussian BIC score on the observational data."""
    require_extra("GES", "causallearn")
    from causallearn.search.ScoreBased.GES import ges as cl_ges

    edges = _cpdag_to_edges(cl_ges(standardise_columns(g.observational), score_func="local_score_BIC")["G"].graph)
    return edges.astype(float), edges


def gies(g: GraphData) -> tuple[np.ndarray, np.ndarray]:
    """GIES (package `gies`, Gaussian BIC) on the observational data plus every interventional regime."""
    require_extra("GIES", "gies")
    import gies as gies_pkg

    # A hard intervention leaves its target constant; GIES drops that variable's likelihood term there, but a
    # non-target column saturated at the simulator's clamp would make the Gaussian likelihood degenerate.
    rng = np.random.default_rng(0)
    data = [g.observational] + [x for _, x in g.regimes]
    data = [x + 1e-6 * rng.standard_normal(x.shape) for x in data]
    estimate, _ = gies_pkg.fit_bic(data, [[]] + [t for t, _ in g.regimes])
    edges = estimate != 0
    return edges.astype(float), edges


def notears(
    g: GraphData, lambda1: float = 0.05, max_outer: int = 20, h_tol: float = 1e-8, threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """A compact linear NOTEARS: least squares + L1 + trace-exponential acyclicity, augmented Lagrangian.

    W = W+ - W- with W+/- >= 0 makes the L1 term smooth for L-BFGS-B; the penalty rho grows x10 until h
    falls below a quarter of its previous value, then the multiplier alpha is updated. Scores are |W|.
    """
    from scipy.linalg import expm
    from scipy.optimize import minimize

    x = standardise_columns(g.observational)
    n, d = x.shape
    off = 1 - np.eye(d)

    def weights(v: np.ndarray) -> np.ndarray:
        return (v[: d * d] - v[d * d :]).reshape(d, d) * off

    def objective(v: np.ndarray, rho: float, alpha: float) -> tuple[float, np.ndarray]:
        w = weights(v)
        resid = x - x @ w
        e = expm(w * w)
        h = np.trace(e) - d
        loss = 0.5 / n * (resid**2).sum() + 0.5 * rho * h * h + alpha * h
        grad_w = (-1.0 / n * x.T @ resid + (rho * h + alpha) * e.T * 2 * w) * off
        grad = np.concatenate([grad_w.ravel() + lambda1, -grad_w.ravel() + lambda1])
        return loss + lambda1 * v.sum(), grad

    v = np.zeros(2 * d * d)
    bounds = [(0, 0) if i == j else (0, None) for _ in range(2) for i in range(d) for j in range(d)]
    rho, alpha, h = 1.0, 0.0, np.inf
    for _ in range(max_outer):
        while rho < 1e16:
            v_new = minimize(objective, v, args=(rho, alpha), jac=True, method="L-BFGS-B", bounds=bounds).x
            w_new = weights(v_new)
            h_new = np.trace(expm(w_new * w_new)) - d
            if h_new <= 0.25 * h:
                break
            rho *= 10
        v, h = v_new, h_new
        alpha += rho * h
        if h <= h_tol or rho >= 1e16:
            break
    scores = np.abs(weights(v))
    return scores, scores > threshold


def abs_corr(g: GraphData, threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """|Pearson correlation| of the observational columns as the score of both directions."""
    c = np.abs(correlation(g.observational))  # a constant column scores 0, without NaN warnings
    np.fill_diagonal(c, 0)
    return c, c > threshold


def abs_partial_corr(g: GraphData, threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """|partial correlation| given all other nodes (shrunk precision of the observational correlation) as the
    score of both directions."""
    c = np.abs(partial_correlation(correlation(g.observational)))
    return c, c > threshold


def empty(g: GraphData) -> tuple[np.ndarray, np.ndarray]:
    """No edges (SHD = number of true edges, AUROC = 0.5)."""
    d = g.observational.shape[1]
    return np.zeros((d, d)), np.zeros((d, d), dtype=bool)


EDGE_METHODS: dict[str, Callable[[GraphData], tuple[np.ndarray, np.ndarray]]] = {
    "PC": pc,
    "GES": ges,
    "GIES": gies,
    "NOTEARS": notears,
    "abs-corr": abs_corr,
    "partial-corr": abs_partial_corr,
    "empty": empty,
}


def zero_delta(batch: DiscoveryBatch) -> Tensor:
    """No change anywhere except the intervened node (whose change is known), z-units [B, Q, d]."""
    z = standardise(batch)
    return torch.where(batch.query_targets, z.query_values - z.query, 0.0) * batch.node_mask[:, None]


def mean_shift_delta(batch: DiscoveryBatch) -> Tensor:
    """Mean interventional shift of every variable under the query's intervention, z-units [B, Q, d].

    For a query do(i = v), the regime that intervened on i with the value nearest v gives the prediction
    mean_int(j) - mean_obs(j) for every j (0 when no regime intervened on i); the target's own change is exact.
    """
    z = standardise(batch)
    w = batch.int_sample_mask.float() * batch.regime_mask[:, :, None]  # [B, R, S]
    shift = (z.interventional * w[..., None]).sum(2) / w.sum(2).clamp_min(1)[..., None]  # [B, R, d] (obs mean 0)
    # Match each query to a regime: same target set, nearest value.
    same = (batch.regime_targets[:, None] == batch.query_targets[:, :, None]).all(-1)  # [B, Q, R]
    same &= batch.regime_mask[:, None] & batch.regime_targets.any(-1)[:, None]
    gap = ((z.regime_values[:, None] - z.query_values[:, :, None]) ** 2).sum(-1)  # [B, Q, R]
    gap = torch.where(same, gap, float("inf"))
    best = gap.argmin(-1)  # [B, Q]
    pred = shift.gather(1, best[..., None].expand(-1, -1, shift.shape[-1]))  # [B, Q, d]
    pred = torch.where(same.any(-1, keepdim=True), pred, 0.0)
    return torch.where(batch.query_targets, z.query_values - z.query, pred) * batch.node_mask[:, None]
