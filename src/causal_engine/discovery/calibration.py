"""Calibrated edge probabilities for the causal PFN: a probability of 0.8 should mean 80 % of such pairs are edges.

A PFN trained with a cross-entropy loss on its prior is calibrated on that prior only in the limit; a finished
checkpoint is usually over- or under-confident. Platt scaling, p = sigmoid(slope · logit + intercept), fitted
by maximum likelihood on edge logits of fresh prior draws, fixes the overall confidence with two numbers and
leaves the ranking (AUROC, top-k) unchanged. It is fitted on prior draws only, never on the out-of-prior
tables it is judged on, and stored in the checkpoint's json sidecar (`checkpoints/pfn.pt` -> `pfn.json`,
key "calibration") by `scripts/calibrate_pfn.py`.
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
    """Platt scaling of edge logits: p = sigmoid(slope · logit + intercept)."""

    slope: float = 1.0
    intercept: float = 0.0

    def probabilities(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from the model's own ones (same shape; the diagonal stays 0)."""
        p = np.clip(np.asarray(probs, dtype=float), 1e-7, 1 - 1e-7)
        out = expit(self.slope * logit(p) + self.intercept)
        if out.ndim == 2 and out.shape[0] == out.shape[1]:
            np.fill_diagonal(out, 0.0)
        return out


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """Maximum-likelihood (slope, intercept) of sigmoid(slope · logit + intercept) for 0/1 `labels`."""
    x, y = np.asarray(logits, dtype=float).ravel(), np.asarray(labels, dtype=float).ravel()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] * x + theta[1]
        p = expit(z)
        # log(1 + e^z) - y z, the Bernoulli negative log-likelihood in a form that does not overflow
        nll = np.logaddexp(0, z) - y * z
        residual = p - y
        return float(nll.mean()), np.array([(residual * x).mean(), residual.mean()])

    theta = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B").x
    return Calibration(float(theta[0]), float(theta[1]))


def prior_edge_logits(
    net: PFNNet, prior: Prior, sizes: Sequence[int], graphs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The PFN's edge logits and true labels over every off-diagonal pair of `graphs` fresh prior graphs per
    size (observational-only graphs, row counts and regimes as the prior draws them), pooled: ([N], [N])."""
    logits, labels = [], []
    for k, d in enumerate(sizes):
        for batch in fixed_set(graphs, 8, d, prior, seed + k):
            with torch.inference_mode():
                edge = net.context(batch).edge_logits  # [B, d, d]
            off = ~torch.eye(d, dtype=torch.bool).expand_as(edge)
            logits.append(edge[off].double().numpy())
            labels.append(batch.adjacency[off].numpy())
    return np.concatenate(logits), np.concatenate(labels)


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
    return Calibration(float(stored["slope"]), float(stored["intercept"]))


def write_calibration(checkpoint: str | Path, calibration: Calibration, info: Mapping[str, Any]) -> None:
    """Store `calibration` (how it was fitted, and the checkpoint's sha256) under "calibration" in the
    checkpoint's json sidecar, keeping its other keys."""
    path = sidecar(checkpoint)
    meta = json.loads(path.read_text()) if path.is_file() else {}
    meta["calibration"] = {**asdict(calibration), **info, "checkpoint_sha256": fingerprint(checkpoint)}
    path.write_text(json.dumps(meta, indent=2) + "\n")
