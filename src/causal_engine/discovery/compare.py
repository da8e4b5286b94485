"""Causal PFN vs classical discovery on the same graphs: one scoring loop for every method.

Used by `task=compare` (e.g. the tour's PFN stop: the shipped checkpoint against PC on fresh graphs) and by
`scripts/bench_discovery.py`. Edge metrics pool every off-diagonal pair of a set's graphs; SHD is the mean per
graph; a CPDAG's undirected edge counts as both directions. Delta RMSE is in observational z-units over
non-intervened nodes.

Timing (`s_per_graph`), the same for every method: wall-clock seconds in the calling process (its thread
count; the benchmarks use one thread everywhere), after one untimed warm-up call per method (a lazily
imported package or the first call's allocations would otherwise be charged to the first graph), divided
by the number of graphs. A baseline runs one graph at a time from its raw samples to its graph. The PFN
reads a whole batch of graphs at once (amortised inference: the test sets come in batches of
`eval_batch_size` graphs) and is timed from the raw batch to edge probabilities - standardisation, all
features, trunk and edge head - without the delta layers, which a structure method does not run; the full
forward pass with the deltas of the batch's queries is reported as `s_per_graph_with_deltas`. A PFN pass
takes milliseconds, so its time is the mean of `repeats` passes per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_f1_score

from causal_engine import metrics as M
from causal_engine.discovery.baselines import EDGE_METHODS, split_graphs
from causal_engine.discovery.checkpoint import load_pfn
from causal_engine.discovery.loss import delta_mask
from causal_engine.discovery.module import true_delta_z
from causal_engine.errors import UserError

log = logging.getLogger(__name__)


def edge_scores(results: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Pooled AUROC/AUPRC/F1 and mean SHD over (scores, predicted, true) per graph."""
    scores, preds, trues, shds = [], [], [], []
    for score, pred, true in results:
        d = true.shape[0]
        off = ~np.eye(d, dtype=bool)
        scores.append(torch.tensor(score[off], dtype=torch.float32))
        preds.append(torch.tensor(pred[off], dtype=torch.float32))
        trues.append(torch.tensor(true[off], dtype=torch.long))
        mask = torch.ones(1, d, dtype=torch.bool)
        shds.append(float(M.shd(torch.tensor(pred)[None], torch.tensor(true)[None], mask)[0]))
    s, p, t = torch.cat(scores), torch.cat(preds), torch.cat(trues)
    return {
        "shd": float(np.mean(shds)),
        "auroc": float(binary_auroc(s, t)),
        "auprc": float(binary_average_precision(s, t)),
        "f1": float(binary_f1_score(p, t)),
    }


def delta_rmse(batches: list, predict) -> float:
    err, n = 0.0, 0
    for batch in batches:
        mask = delta_mask(batch)
        diff = (predict(batch) - true_delta_z(batch))[mask]
        err, n = err + float((diff**2).sum()), n + int(mask.sum())
    return (err / max(n, 1)) ** 0.5


def _mean_seconds(fn: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def run_pfn(checkpoint: Path, batches: list, repeats: int = 5) -> dict[str, float]:
    """The PFN's metrics on `batches`, its seconds per graph to the graph and with the deltas (module docstring)."""
    net = load_pfn(checkpoint)
    results, graph_s, full_s, graphs = [], 0.0, 0.0, 0
    cache = {}
    with torch.inference_mode():
        net(batches[0])  # warm-up
        for batch in batches:
            graph_s += _mean_seconds(lambda b=batch: torch.sigmoid(net.context(b).edge_logits), repeats)
            full_s += _mean_seconds(lambda b=batch: net(b), repeats)
            graphs += batch.num_graphs
            out = net(batch)
            cache[id(batch)] = out.delta
            probs = out.edge_probs
            for b in range(batch.num_graphs):
                d = int(batch.node_mask[b].sum())
                p = probs[b, :d, :d].numpy()
                results.append((p, p > 0.5, batch.adjacency[b, :d, :d].numpy()))
    row = edge_scores(results)
    row["delta_rmse"] = delta_rmse(batches, lambda batch: cache[id(batch)])
    row["s_per_graph"] = graph_s / graphs
    row["s_per_graph_with_deltas"] = full_s / graphs
    return row


def run_method(name: str, batches: list) -> dict[str, float]:
    """A baseline's metrics on `batches` and its seconds per graph (one graph at a time, after a warm-up call)."""
    method = EDGE_METHODS[name]
    results, seconds, graphs = [], 0.0, 0
    method(split_graphs(batches[0])[0])  # warm-up
    for batch in batches:
        for g in split_graphs(batch):
            start = time.perf_counter()
            score, pred = method(g)
            seconds += time.perf_counter() - start
            graphs += 1
            results.append((score, pred, g.adjacency))
    return {**edge_scores(results), "delta_rmse": float("nan"), "s_per_graph": seconds / graphs}


def compare(
    cfg: DictConfig,
    checkpoint: str,
    sets: Sequence[str] = ("er_d20",),
    methods: Sequence[str] = ("PC",),
    graphs: int = 8,
) -> dict[str, float]:
    """`task=compare`: the PFN at `checkpoint` and each of `methods` on the first `graphs` graphs of the
    DataModule's test `sets` (fresh graphs from the prior, seeded). Metrics: `compare/<set>/<method>/<metric>`."""
    unknown = sorted(set(methods) - set(EDGE_METHODS))
    if unknown:
        raise UserError(f"task.methods: unknown method(s) {unknown}; available: {sorted(EDGE_METHODS)}.")
    datamodule = instantiate(cfg.data, test_graphs=graphs, _convert_="all")
    missing = sorted(set(sets) - set(datamodule.test_names))
    if missing:
        raise UserError(f"task.sets: unknown test set(s) {missing}; data.test_sets has {datamodule.test_names}.")
    datamodule.test_specs = {name: datamodule.test_specs[name] for name in sets}
    datamodule.setup("test")
    metrics: dict[str, float] = {}
    for name in sets:
        batches = datamodule.test_batches[name]
        rows = {"pfn": run_pfn(Path(checkpoint), batches)}
        for method in methods:
            log.info("compare: %s on %s", method, name)
            rows[method] = run_method(method, batches)
        for method, row in rows.items():
            metrics.update({f"compare/{name}/{method}/{key}": value for key, value in row.items()})
    return metrics
