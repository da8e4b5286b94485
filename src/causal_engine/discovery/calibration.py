"""Calibrated edge probabilities for the causal PFN: a probability of 0.8 should mean 80 % of such pairs are edges.

A PFN trained with a cross-entropy loss on its prior is calibrated on that prior only in the limit; a finished
checkpoint is usually over- or under-confident, and by how much depends on the graph's size (the shipped one
is under-confident on graphs of a few variables, whose edges are dense, and over-confident on large ones), which
no single (slope, intercept) can follow. Platt scaling whose two numbers are linear in log d,
p = sigmoid(a(d) · logit + b(d)), fitted by maximum likelihood on edge logits of fresh prior draws of many
sizes, fixes the confidence size by size and leaves each graph's ranking (AUROC, top-k) unchanged. It is
fitted on prior draws only, never on the out-of-prior tables it is judged on, and stored in the checkpoint's
json sidecar (`checkpoints/pfn.pt` -> `pfn.json`, key "calibration") by `scripts/calibrate_pfn.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit, logit

from causal_engine.discovery.checkpoint import sidecar
from causal_engine.discovery.data import Prior, fixed_set
from causal_engine.discovery.models import PFNNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """Size-dependent Platt scaling of edge logits: p = sigmoid(a(d) · logit + b(d)) for a d-variable graph,
    a(d) = slope[0] + slope[1] log d and b(d) = intercept[0] + intercept[1] log d, with d clamped to `sizes`,
    the range of graph sizes it was fitted on (beyond it a linear trend in log d is a guess)."""

    slope: tuple[float, float] = (1.0, 0.0)
    intercept: tuple[float, float] = (0.0, 0.0)
    sizes: tuple[int, int] = (2, 1_000_000)

    def probabilities(self, probs: np.ndarray, num_nodes: int | np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities from the model's own ones (same shape). `num_nodes`: the graph's size,
        by default the last axis of a [..., d, d] matrix (whose diagonal stays 0), or one per entry of pooled
        probabilities [N]."""
        p = np.clip(np.asarray(probs, dtype=float), 1e-7, 1 - 1e-7)
        d = p.shape[-1] if num_nodes is None else np.asarray(num_nodes, dtype=float)
        log_d = np.log(np.clip(d, *self.sizes))
        a, b = self.slope[0] + self.slope[1] * log_d, self.intercept[0] + self.intercept[1] * log_d
        out = expit(a * logit(p) + b)
        if out.ndim >= 2 and out.shape[-1] == out.shape[-2]:
            out[..., np.arange(out.shape[-1]), np.arange(out.shape[-1])] = 0.0
        return out


def fit_platt(logits: np.ndarray, labels: np.ndarray, num_nodes: np.ndarray) -> Calibration:
    """Maximum-likelihood `Calibration` of 0/1 `labels` from `logits`, each pair from a graph of `num_nodes`
    variables (all [N]). Every size weighs the same in the likelihood, since a d = 100 graph has 500 times the
    pairs of a d = 5 one and would otherwise set the scaling alone. With one size the log d terms are not
    identifiable and stay 0."""
    x, y = np.asarray(logits, dtype=float).ravel(), np.asarray(labels, dtype=float).ravel()
    d = np.asarray(num_nodes, dtype=float).ravel()
    log_d = np.log(d) if d.min() < d.max() else np.zeros_like(d)
    design = np.stack([x, x * log_d, np.ones_like(x), log_d], 1)  # [N, 4]: slope, its trend, intercept, its trend
    _, size_index, size_count = np.unique(d, return_inverse=True, return_counts=True)
    weight = 1.0 / size_count[size_index]  # [N]
    weight /= weight.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ theta
        # log(1 + e^z) - y z, the Bernoulli negative log-likelihood in a form that does not overflow
        nll = np.logaddexp(0, z) - y * z
        return float(weight @ nll), design.T @ (weight * (expit(z) - y))

    a0, a1, b0, b1 = minimize(loss, np.array([1.0, 0.0, 0.0, 0.0]), jac=True, method="L-BFGS-B").x
    return Calibration((float(a0), float(a1)), (float(b0), float(b1)), (int(d.min()), int(d.max())))


def prior_edge_logits(
    net: PFNNet, prior: Prior, sizes: Sequence[int], graphs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PFN's edge logits, true labels and graph sizes over every off-diagonal pair of `graphs` fresh prior
    graphs per size (observational-only graphs, row counts and regimes as the prior draws them), pooled:
    ([N], [N], [N])."""
    logits, labels, num_nodes = [], [], []
    for k, d in enumerate(sizes):
        for batch in fixed_set(graphs, 8, d, prior, seed + k):
            with torch.inference_mode():
                edge = net.context(batch).edge_logits  # [B, d, d]
            off = ~torch.eye(d, dtype=torch.bool).expand_as(edge)
            logits.append(edge[off].double().numpy())
            labels.append(batch.adjacency[off].numpy())
            num_nodes.append(np.full(labels[-1].shape, d))
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(num_nodes)


def fingerprint(checkpoint: str | Path) -> str:
    """sha256 of the checkpoint file: a calibration belongs to one set of weights."""
    return hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()


def read_calibration(checkpoint: str | Path) -> Calibration | None:
    """The calibration stored beside `checkpoint`, or None when its json has none (or there is no json), or
    when it was fitted for other weights (the file's sha256 differs: a retrained checkpoint must be
    recalibrated, with a warning saying so)."""
    path = sidecar(checkpoint)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text()).get("calibration")
    if stored is None:
        return None
    if stored.get("checkpoint_sha256") != fingerprint(checkpoint):
        log.warning(
            "%s: its calibration was fitted for other weights and is ignored; run `python scripts/calibrate_pfn.py "
            "--checkpoint %s`.",
            path,
            checkpoint,
        )
        return None
    if not isinstance(stored["slope"], list):  # written before the size terms: the same scaling at every size
        return Calibration((float(stored["slope"]), 0.0), (float(stored["intercept"]), 0.0))
    return Calibration(tuple(stored["slope"]), tuple(stored["intercept"]), tuple(stored["sizes"]))


def write_calibration(checkpoint: str | Path, calibration: Calibration, info: Mapping[str, Any]) -> None:
    """Store `calibration` (how it was fitted, and the checkpoint's sha256) under "calibration" in the
    checkpoint's json sidecar, keeping its other keys."""
    path = sidecar(checkpoint)
    meta = json.loads(path.read_text()) if path.is_file() else {}
    meta["calibration"] = {**asdict(calibration), **info, "checkpoint_sha256": fingerprint(checkpoint)}
    path.write_text(json.dumps(meta, indent=2) + "\n")
