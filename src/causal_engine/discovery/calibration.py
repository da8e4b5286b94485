"""Calibrated edge probabilities for the causal PFN: a probability of 0.8 should mean 80 % of such pairs are edges.

A PFN trained with a cross-entropy loss on its prior is calibrated on that prior only in the limit; a finished
checkpoint is usually over- or under-confident, and how depends on the graph's size and on the probability
itself: the shipped one is under-confident on graphs of a few variables, whose edges are dense, and on large
graphs over-confident at 0.1-0.3 but near right around 0.5, where the graph is decided. A parametric
scaling (Platt, even with size terms) follows the mass of small probabilities and drags the pairs near 0.5
along, emptying the graph at 0.5 on large tables. Isotonic regression (Zadrozny & Elkan 2002) per graph size
follows any monotone shape: fitted by `fit_isotonic` on fresh prior draws of each size, read in between sizes
by interpolating linearly in log d, it fixes the confidence size by size and keeps each graph's ranking
(AUROC, top-k), beyond its end knots too (`TAIL`). The confidence also depends on the kind of table: one
map for both kinds leaves the net under-confident on observational-only tables and over-confident on tables
with interventional regimes, so each kind has its own maps (`TableCalibration`). It is fitted on prior draws
only, never on the out-of-prior tables it is judged on, and stored in the checkpoint's json sidecar
(`checkpoints/pfn.pt` -> `pfn.json`, key "calibration") by `scripts/calibrate_pfn.py`.
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
from scipy.optimize import isotonic_regression

from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.checkpoint import sidecar
from causal_engine.discovery.data import Prior
from causal_engine.discovery.models import PFNNet
from causal_engine.discovery.pair_head import prior_pairs

log = logging.getLogger(__name__)

# Beyond a map's end knots (pairs more or less confident than any fitted block's mean) the map keeps rising, by at
# most this share of the room left to 0 or 1 between the end knot and p = 0 or 1: a flat tail would tie every such
# pair and lose the ranking exactly where the model is surest.
TAIL = 1e-3


def _monotone_map(p: np.ndarray, knots: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """The piecewise-linear map through (`knots`, `values`) at `p`, with strictly rising tails (`TAIL`)."""
    low, high = knots[0], knots[-1]
    below = np.clip((low - p) / max(low, 1e-12), 0.0, 1.0)  # 0 at the low knot, 1 at p = 0
    above = np.clip((p - high) / max(1.0 - high, 1e-12), 0.0, 1.0)  # 0 at the high knot, 1 at p = 1
    return np.interp(p, knots, values) - TAIL * (values[0] * below - (1.0 - values[-1]) * above)


@dataclass(frozen=True)
class Calibration:
    """Monotone maps of edge probabilities, one per graph size in `sizes` (increasing): at size `sizes[k]`, a
    model probability p becomes the piecewise-linear interpolation of (`knots[k]`, `values[k]`) at p (beyond the
    end knots, a tail that rises by at most `TAIL`). Between two fitted sizes the two maps' outputs are mixed
    linearly in log d; beyond the fitted range the nearest size's map applies. The default is the identity."""

    sizes: tuple[int, ...] = (2,)
    knots: tuple[tuple[float, ...], ...] = ((0.0, 1.0),)
    values: tuple[tuple[float, ...], ...] = ((0.0, 1.0),)

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Calibration:
        """The inverse of `dataclasses.asdict` after a json round trip (lists back to tuples)."""
        return cls(tuple(stored["sizes"]), tuple(map(tuple, stored["knots"])), tuple(map(tuple, stored["values"])))

    def _at_size(self, p: np.ndarray, d: float) -> np.ndarray:
        log_sizes = np.log(self.sizes)
        k = int(np.searchsorted(log_sizes, np.log(d)))
        if k == 0 or k == len(self.sizes):
            k = min(k, len(self.sizes) - 1)
            return _monotone_map(p, self.knots[k], self.values[k])
        share = (np.log(d) - log_sizes[k - 1]) / (log_sizes[k] - log_sizes[k - 1])
        low, high = (_monotone_map(p, self.knots[i], self.values[i]) for i in (k - 1, k))
        return (1 - share) * low + share * high

    def probabilities(self, probs: np.ndarray, num_nodes: int | np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities from the model's own ones (same shape). `num_nodes`: the graph's size,
        by default the last axis of a [..., d, d] matrix (whose diagonal stays 0), or one per entry of pooled
        probabilities [N]."""
        p = np.asarray(probs, dtype=float)
        if num_nodes is None:  # one size: one map, without the masks that pooled sizes need
            out = self._at_size(p, float(p.shape[-1]))
        else:
            d = np.broadcast_to(np.asarray(num_nodes, dtype=float), p.shape)
            out = np.empty_like(p)
            for size in np.unique(d):
                out[d == size] = self._at_size(p[d == size], float(size))
        if out.ndim >= 2 and out.shape[-1] == out.shape[-2]:
            out[..., np.arange(out.shape[-1]), np.arange(out.shape[-1])] = 0.0
        return out


KINDS = ("observational", "interventional")  # a table without / with interventional regimes


@dataclass(frozen=True)
class TableCalibration:
    """A checkpoint's calibration: one `Calibration` for observational-only tables and one for tables with
    interventional regimes (the module docstring says why), each fitted on prior draws of its kind."""

    observational: Calibration = Calibration()
    interventional: Calibration = Calibration()

    def probabilities(self, probs: np.ndarray, interventional: bool, num_nodes: int | None = None) -> np.ndarray:
        """`Calibration.probabilities` with the maps of the table's kind."""
        return getattr(self, KINDS[int(interventional)]).probabilities(probs, num_nodes)


def calibrated(probs: torch.Tensor, batch: DiscoveryBatch, calibration: TableCalibration | None) -> list[np.ndarray]:
    """Each graph's [d, d] edge probabilities from a batch's [B, D, D] (padding dropped, diagonal 0), mapped
    through the maps of the graph's kind (with interventional regimes or without) at the graph's own size; the
    model's own probabilities when `calibration` is None."""
    out = []
    for b in range(probs.shape[0]):
        d = int(batch.node_mask[b].sum())
        p = probs[b, :d, :d].numpy().astype(float)
        if calibration is not None:
            p = calibration.probabilities(p, interventional=bool(batch.regime_mask[b].any()))
        np.fill_diagonal(p, 0.0)
        out.append(p)
    return out


def fit_isotonic(probs: np.ndarray, labels: np.ndarray, num_nodes: np.ndarray, min_pairs: int = 200) -> Calibration:
    """A `Calibration` of 0/1 `labels` from model `probs`, each pair from a graph of `num_nodes` variables (all
    [N]): per size, the isotonic (non-decreasing) least-squares fit of the labels in the order of the
    probabilities (scipy's pool-adjacent-violators), one knot per pooled block at its mean probability, so the
    map rises strictly between its end knots and a graph's ranking is kept there.

    A block of fewer than `min_pairs` pairs is pooled with the neighbour whose edge rate is closer (pooling
    neighbours keeps the map monotone), so no value rests on a handful of pairs: the few most confident pairs
    of a size would otherwise set the map's top to their own rate, far from what held-out pairs there show."""
    p, y = np.asarray(probs, dtype=float).ravel(), np.asarray(labels, dtype=float).ravel()
    d = np.asarray(num_nodes).ravel()
    sizes, knots, values = [], [], []
    for size in np.unique(d):
        order = np.argsort(p[d == size], kind="stable")
        ranked, ranked_y = p[d == size][order], y[d == size][order]  # [n] each
        bounds = _pool_small_blocks(list(isotonic_regression(ranked_y).blocks), ranked_y, min_pairs)
        starts, ends = bounds[:-1], bounds[1:]
        sizes.append(int(size))
        knots.append(tuple(float(ranked[a:b].mean()) for a, b in zip(starts, ends, strict=True)))
        values.append(tuple(float(ranked_y[a:b].mean()) for a, b in zip(starts, ends, strict=True)))
    return Calibration(tuple(sizes), tuple(knots), tuple(values))


def _pool_small_blocks(bounds: list[int], labels: np.ndarray, min_pairs: int) -> list[int]:
    """Block edges [0, ..., n] of an isotonic fit of `labels` [n], with every block of fewer than `min_pairs`
    entries (the smallest first) merged into the neighbour whose mean is closer, until none is left or one
    block remains."""
    total = np.concatenate([[0.0], np.cumsum(labels)])

    def mean(k: int) -> float:
        return (total[bounds[k + 1]] - total[bounds[k]]) / (bounds[k + 1] - bounds[k])

    while len(bounds) > 2:
        counts = np.diff(bounds)
        k = int(np.argmin(counts))
        if counts[k] >= min_pairs:
            break
        if k == 0 or (k < len(counts) - 1 and abs(mean(k + 1) - mean(k)) < abs(mean(k - 1) - mean(k))):
            del bounds[k + 1]  # into the right-hand neighbour
        else:
            del bounds[k]  # into the left-hand neighbour
    return bounds


def prior_edge_logits(
    net: PFNNet, prior: Prior, sizes: Sequence[int], graphs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PFN's edge logits, true labels and graph sizes over every off-diagonal pair of `graphs` fresh prior
    graphs per size (observational-only graphs, row counts and regimes as the prior draws them), pooled:
    ([N], [N], [N])."""
    logits, labels, num_nodes = [], [], []
    for k, d in enumerate(sizes):
        _, edge, label = prior_pairs(net, [prior], [d], graphs, seed + k)  # [N] each
        logits.append(edge.double().numpy())
        labels.append(label.numpy())
        num_nodes.append(np.full(labels[-1].shape, d))
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(num_nodes)


def fingerprint(checkpoint: str | Path) -> str:
    """sha256 of the checkpoint file: a calibration belongs to one set of weights."""
    return hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()


def read_calibration(checkpoint: str | Path) -> TableCalibration | None:
    """The calibration stored beside `checkpoint`, or None when its json has none (or there is no json), and,
    with a warning saying how to recalibrate, when it was fitted for other weights (the file's sha256 differs)
    or is of a kind an earlier version wrote (Platt scaling, or one isotonic map per size for every table)."""
    path = sidecar(checkpoint)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text()).get("calibration")
    if stored is None:
        return None
    if stored.get("checkpoint_sha256") != fingerprint(checkpoint):
        reason = "was fitted for other weights"
    elif not all(kind in stored for kind in KINDS):
        reason = "is of an older kind (one map for observational and interventional tables alike)"
    else:
        return TableCalibration(**{kind: Calibration.from_json(stored[kind]) for kind in KINDS})
    log.warning(
        "%s: its calibration %s and is ignored; run `python scripts/calibrate_pfn.py --checkpoint %s`.",
        path,
        reason,
        checkpoint,
    )
    return None


def write_calibration(checkpoint: str | Path, calibration: TableCalibration, info: Mapping[str, Any]) -> None:
    """Store `calibration` (how it was fitted, and the checkpoint's sha256) under "calibration" in the
    checkpoint's json sidecar, keeping its other keys."""
    path = sidecar(checkpoint)
    meta = json.loads(path.read_text()) if path.is_file() else {}
    maps = {kind: asdict(getattr(calibration, kind)) for kind in KINDS}
    meta["calibration"] = {**maps, **info, "checkpoint_sha256": fingerprint(checkpoint)}
    path.write_text(json.dumps(meta, indent=2) + "\n")
