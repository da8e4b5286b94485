"""Metrics shared by the three systems, as plain functions on tensors (torchmetrics where one exists).

One home for every metric: discovery (graph and delta errors), causal fine-tuning (interventional
errors) and DML (coverage) all report through here, so a number means the same thing everywhere.
Each system adds its functions under its own heading.
"""

from __future__ import annotations

# --- discovery (helper "pfn"): graph and delta metrics, masked for padding nodes ---------------------------
# Conventions: adjacency[b, i, j] = 1 iff i -> j; node_mask [B, d] bool marks real nodes; the diagonal is
# never an edge. Pooled metrics (AUROC, AUPRC, F1, RMSE, R²) pool every valid entry of the batch.
import torch
from torch import Tensor

from causal_engine.graphs import descendants


def valid_edge_mask(node_mask: Tensor) -> Tensor:
    """Off-diagonal pairs between real nodes, [B, d, d] bool."""
    d = node_mask.shape[-1]
    eye = torch.eye(d, dtype=torch.bool, device=node_mask.device)
    return node_mask[:, :, None] & node_mask[:, None, :] & ~eye


def shd(pred: Tensor, true: Tensor, node_mask: Tensor) -> Tensor:
    """Structural Hamming distance per graph, [B]: node pairs {i, j} whose edge state differs.

    The state of a pair is none, i -> j, j -> i or both; a missing, an extra and a reversed edge each count 1.
    """
    valid = valid_edge_mask(node_mask)
    p, t = pred.bool() & valid, true.bool() & valid
    differs = (p != t) | (p.transpose(1, 2) != t.transpose(1, 2))  # [B, d, d], symmetric
    return torch.triu(differs, diagonal=1).sum((1, 2)).float()


def is_cyclic(pred: Tensor, node_mask: Tensor) -> Tensor:
    """Whether each predicted graph has a directed cycle, [B] bool (some node is its own descendant)."""
    return descendants(pred.bool() & valid_edge_mask(node_mask)).diagonal(dim1=1, dim2=2).any(-1)


def masked_edges(probs: Tensor, true: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten the valid off-diagonal entries: (scores [n], targets [n] long) for torchmetrics."""
    valid = valid_edge_mask(node_mask)
    return probs[valid], true[valid].long()


def delta_rmse(pred: Tensor, true: Tensor, mask: Tensor) -> Tensor:
    """Root mean squared error over the entries where `mask` is True."""
    return ((pred - true)[mask] ** 2).mean().sqrt()


def delta_r2(pred: Tensor, true: Tensor, mask: Tensor) -> Tensor:
    """Coefficient of determination 1 - SS_res / SS_tot over the entries where `mask` is True."""
    p, t = pred[mask], true[mask]
    return 1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum().clamp_min(1e-12)


# --- jepa-dml (helper "jepa-dml"): representation probes and interval coverage ------------------------------
import numpy as np  # noqa: E402


def linear_probe_r2(
    z_train: np.ndarray, u_train: np.ndarray, z_test: np.ndarray, u_test: np.ndarray, ridge: float = 1e-3
) -> float:
    """Mean held-out R² over the columns of U of a ridge regression U ~ Z (with intercept).

    Says how linearly decodable the true confounders are from a representation: fit on (z_train,
    u_train), score on (z_test, u_test); features are standardised with the training statistics.
    """
    mu, sd = z_train.mean(0), z_train.std(0) + 1e-8
    a = np.c_[np.ones(len(z_train)), (z_train - mu) / sd]  # [n, 1 + D]
    b = np.c_[np.ones(len(z_test)), (z_test - mu) / sd]
    penalty = ridge * len(a) * np.eye(a.shape[1])
    penalty[0, 0] = 0.0  # do not shrink the intercept
    coef = np.linalg.solve(a.T @ a + penalty, a.T @ u_train)  # [1 + D, k]
    resid = ((u_test - b @ coef) ** 2).sum(0)
    total = ((u_test - u_test.mean(0)) ** 2).sum(0)
    return float(np.mean(1.0 - resid / np.maximum(total, 1e-12)))


def interval_summary(estimates: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray, truth: float) -> dict[str, float]:
    """Bias, RMSE, coverage and mean width of replicated interval estimates of one true value."""
    estimates, ci_low, ci_high = (np.asarray(a, dtype=np.float64) for a in (estimates, ci_low, ci_high))
    return {
        "bias": float(np.mean(estimates - truth)),
        "rmse": float(np.sqrt(np.mean((estimates - truth) ** 2))),
        "coverage": float(np.mean((ci_low <= truth) & (truth <= ci_high))),
        "ci_width": float(np.mean(ci_high - ci_low)),
    }


# --- causal fine-tuning (helper "intervene"): interventional and counterfactual errors ---------------------


def rmse(pred: Tensor, true: Tensor) -> Tensor:
    """Root mean squared error over all entries."""
    return ((pred - true) ** 2).mean().sqrt()


def do_response_errors(pred: Tensor, true: Tensor) -> dict[str, Tensor]:
    """Errors of a do-response curve E[Y | do(X = v)] over a grid of v (pred, true [V], grid ascending).

    rmse: over the grid; rel_rmse: rmse / SD of the true curve (inf for a flat truth); ate_error: error of
    E[Y|do(X=v_last)] − E[Y|do(X=v_first)], the effect across the grid (5 % → 95 % quantile of X).
    """
    err = rmse(pred, true)
    spread = true.std() if true.numel() > 1 else true.new_tensor(0.0)
    return {
        "rmse": err,
        "rel_rmse": err / spread if spread > 0 else torch.full_like(err, float("inf")),
        "ate_error": ((pred[-1] - pred[0]) - (true[-1] - true[0])).abs(),
    }


def mmd_rbf(x: Tensor, y: Tensor, bandwidth: float | None = None) -> Tensor:
    """Unbiased squared MMD between samples x [n, d] and y [m, d] with a Gaussian kernel.

    bandwidth: the kernel's length scale; None = the median pairwise distance of the pooled sample.
    """
    x, y = x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()
    pooled = torch.cat([x, y])
    dist = torch.cdist(pooled, pooled) ** 2  # [n+m, n+m]
    if bandwidth is None:
        off = dist[~torch.eye(len(pooled), dtype=torch.bool)]
        bandwidth = float(off.median().sqrt().clamp_min(1e-12))
    kernel = torch.exp(-dist / (2 * bandwidth**2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    term_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    term_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return term_x + term_y - 2 * kxy.mean()


# --- discovery (helper "pfn-bench"): calibration of edge probabilities ----------------------------------------


def _bin_of(p: np.ndarray, bins: int) -> np.ndarray:
    """The equal-width bin of each probability in p [N] -> [N] in 0..bins - 1 (1.0 falls in the last bin)."""
    return np.minimum((p * bins).astype(int), bins - 1)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width probability bins: (mean predicted probability, observed edge rate, count) per bin, [bins]
    each; an empty bin has NaN means and count 0."""
    p, y = np.asarray(probs, dtype=float).ravel(), np.asarray(labels, dtype=float).ravel()
    which = _bin_of(p, bins)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, p, minlength=bins) / count
        rate = np.bincount(which, y, minlength=bins) / count
    return confidence, rate, count


def binned_calibration_error(confidence: np.ndarray, rate: np.ndarray, count: np.ndarray) -> float:
    """ECE from `reliability` bins: the count-weighted mean |observed rate - mean probability|."""
    used = count > 0
    return float((count[used] * np.abs(rate[used] - confidence[used])).sum() / count.sum())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width probability bins (0 = calibrated: each bin's edge rate equals its mean probability)."""
    return binned_calibration_error(*reliability(probs, labels, bins))


def calibrated_ece_band(probs: np.ndarray, bins: int = 10, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(mean, 95th percentile) of the ECE a perfectly calibrated model would show on these pairs: labels drawn
    `draws` times as Bernoulli(probs), each draw's `expected_calibration_error`.

    Why: an ECE measured on finitely many pairs is positive even when every probability is right, and on one
    small table (a hundred pairs) the sampling error alone is several hundredths; an observed ECE inside this
    band does not show miscalibration."""
    p = np.asarray(probs, dtype=float).ravel()
    which = _bin_of(p, bins)  # [N]
    count = np.bincount(which, minlength=bins).astype(float)  # [bins]
    confidence = np.bincount(which, p, minlength=bins)  # [bins] summed probabilities
    rng, ece = np.random.default_rng(seed), []
    chunk = max(1, 2**22 // max(p.size, 1))  # draws at a time: about 4M labels
    for start in range(0, draws, chunk):
        labels = rng.random((min(chunk, draws - start), p.size)) < p  # [chunk, N]
        positives = np.stack([labels[:, which == b].sum(1) for b in range(bins)], 1)  # [chunk, bins] edges
        ece.append(np.abs(positives - confidence).sum(1) / count.sum())  # count-weighted |rate - confidence|
    every = np.concatenate(ece)  # [draws]
    return float(every.mean()), float(np.quantile(every, 0.95))
