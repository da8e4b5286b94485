"""Causal PFN vs classical discovery on the same graphs: one scoring loop for every method.

Used by `task=compare` (e.g. the tour's PFN stop: the shipped checkpoint against PC on fresh graphs) and by
`scripts/bench_discovery.py`. Edge metrics pool every off-diagonal pair of a set's graphs; SHD is the mean per
graph; a CPDAG's undirected edge counts as both directions. SID is the mean normalised structural intervention
distance per graph (`graphs.structural_intervention_distance`: PC's and GES's undirected edges stay undirected,
any other answer is made a DAG by dropping its lowest-scored cycle closers; none for a skeleton score). Delta
RMSE is in observational z-units over non-intervened nodes.

Timing (`s_per_graph`), the same for every method: CPU seconds of the calling process (`time.process_time`:
every thread's time, so one thread's time when the benchmarks pin one thread everywhere; unlike wall time it
does not grow when other jobs share the cores), after one untimed warm-up call per method (a lazily
imported package or the first call's allocations would otherwise be charged to the first graph), divided
by the number of graphs. A baseline runs one graph at a time from its raw samples to its graph. The PFN
reads a whole batch of graphs at once (amortised inference: the test sets come in batches of
`eval_batch_size` graphs) and is timed from the raw batch to edge probabilities - standardisation, all
features, trunk, edge head and the checkpoint's calibration - without the delta layers, which a structure
method does not run; the full forward pass with the deltas of the batch's queries is reported as
`s_per_graph_with_deltas`. A PFN pass takes milliseconds, so its time is the mean of `repeats` passes per batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_f1_score

from causal_engine import metrics as M
from causal_engine.discovery.baselines import EDGE_METHODS, GraphData, split_graphs
from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.calibration import TableCalibration, calibrated, read_calibration
from causal_engine.discovery.checkpoint import load_pfn, trained_do_range
from causal_engine.discovery.discover import do_distance, predict, table_batch
from causal_engine.discovery.external import (
    DISCRETE_LEVELS,
    DISCRETE_SHARE,
    discretised,
    monotone_copies,
    sorted_rows,
    standardise_table,
)
from causal_engine.discovery.loss import delta_mask
from causal_engine.discovery.module import true_delta_z
from causal_engine.errors import UserError, require_extra
from causal_engine.graphs import predicted_edges, structural_intervention_distance
from causal_engine.plots import log_figure, reliability_figure, save_figure
from causal_engine.train import instantiate_loggers

log = logging.getLogger(__name__)


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the defined values (NaN if none is): a metric a method lacks on some graphs averages the rest."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def edge_scores(results: list[tuple[np.ndarray, np.ndarray, np.ndarray]], method: str = "") -> dict[str, float]:
    """Pooled AUROC/AUPRC/F1 and mean SHD and SID over (scores, predicted, true) per graph of `method` (its name
    says whether the answer is a CPDAG, a DAG or a skeleton without SID)."""
    scores, preds, trues, shds, sids = [], [], [], [], []
    for score, pred, true in results:
        d = true.shape[0]
        off = ~np.eye(d, dtype=bool)
        scores.append(torch.tensor(score[off], dtype=torch.float64))  # calibrated tails differ below float32
        preds.append(torch.tensor(pred[off], dtype=torch.float32))
        trues.append(torch.tensor(true[off], dtype=torch.long))
        mask = torch.ones(1, d, dtype=torch.bool)
        shds.append(float(M.shd(torch.tensor(pred)[None], torch.tensor(true)[None], mask)[0]))
        if method not in SKELETONS:
            sids.append(structural_intervention_distance(true, pred, score, cpdag=method in CPDAGS))
    s, p, t = torch.cat(scores), torch.cat(preds), torch.cat(trues)
    return {
        "shd": float(np.mean(shds)),
        "sid": _nanmean(sids),  # NaN for a skeleton method (see the module docstring)
        "auroc": float(binary_auroc(s, t)),
        "auprc": float(binary_average_precision(s, t)),
        "f1": float(binary_f1_score(p, t)),
    }


def pooled_pairs(results: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The off-diagonal (scores, 0/1 labels) of every (scores, predicted, true) graph, pooled: both [N]."""
    off = [~np.eye(t.shape[0], dtype=bool) for _, _, t in results]
    scores = np.concatenate([s[m] for (s, _, _), m in zip(results, off, strict=True)])
    labels = np.concatenate([t[m] for (_, _, t), m in zip(results, off, strict=True)])
    return scores, labels


def delta_rmse(batches: list, predict, queries: Callable[[DiscoveryBatch], Tensor] | None = None) -> float:
    """RMSE of `predict(batch)` against the true deltas (z-units), over the query rows `queries(batch)` [B, Q]
    selects (all by default); NaN when none is selected."""
    err, n = 0.0, 0
    for batch in batches:
        mask = delta_mask(batch)
        if queries is not None:
            mask = mask & queries(batch)[..., None]
        diff = (predict(batch) - true_delta_z(batch))[mask]
        err, n = err + float((diff**2).sum()), n + int(mask.sum())
    return (err / n) ** 0.5 if n else float("nan")


def _mean_seconds(fn: Callable[[], object], repeats: int) -> float:
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def run_pfn(checkpoint: Path, batches: list, repeats: int = 5) -> dict[str, Any]:
    """The PFN's metrics on `batches`, its seconds per graph to the graph and with the deltas (module docstring).
    Edge probabilities are calibrated, and the graph read from them, as `task=discover` does when the
    checkpoint's json holds a calibration for its weights; the row's `ece` is that of the pooled pairs, and its
    `reliability` their bins (`metrics.reliability`: confidence, rate, count), the one entry that is not a number."""
    net = load_pfn(checkpoint)
    calibration = read_calibration(checkpoint)
    results, graph_s, full_s, graphs = [], 0.0, 0.0, 0
    cache = {}

    def graph_probs(batch: DiscoveryBatch) -> list[np.ndarray]:
        return calibrated(torch.sigmoid(net.context(batch).edge_logits), batch, calibration)

    with torch.inference_mode():
        net(batches[0])  # warm-up
        for batch in batches:
            graph_s += _mean_seconds(lambda b=batch: graph_probs(b), repeats)
            full_s += _mean_seconds(lambda b=batch: net(b), repeats)
            graphs += batch.num_graphs
            out = net(batch)
            cache[id(batch)] = out.delta
            probs = calibrated(out.edge_probs, batch, calibration)
            for b, p in enumerate(probs):
                d = p.shape[0]
                pred = predicted_edges(torch.from_numpy(p)).numpy()
                results.append((p, pred, batch.adjacency[b, :d, :d].numpy()))
    row = edge_scores(results)
    probs, labels = pooled_pairs(results)
    row["ece"] = M.expected_calibration_error(probs, labels)
    row["reliability"] = M.reliability(probs, labels)
    row["delta_rmse"] = delta_rmse(batches, lambda batch: cache[id(batch)])
    limit = trained_do_range(checkpoint)
    if limit is not None:  # the deltas within and beyond the do-values the checkpoint was trained on
        cached = lambda batch: cache[id(batch)]  # noqa: E731
        row["delta_rmse_in_range"] = delta_rmse(batches, cached, lambda b: do_distance(b) <= limit)
        row["delta_rmse_beyond"] = delta_rmse(batches, cached, lambda b: do_distance(b) > limit)
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
            start = time.process_time()
            score, pred = method(g)
            seconds += time.process_time() - start
            graphs += 1
            results.append((score, pred, g.adjacency))
    return {**edge_scores(results, name), "delta_rmse": float("nan"), "s_per_graph": seconds / graphs}


def compare(
    cfg: DictConfig,
    checkpoint: str,
    sets: Sequence[str] = ("er_d20",),
    methods: Sequence[str] = ("PC",),
    graphs: int = 8,
) -> dict[str, float]:
    """`task=compare`: the PFN at `checkpoint` and each of `methods` on the first `graphs` graphs of the
    DataModule's test `sets` (fresh graphs from the prior, seeded). Metrics: `compare/<set>/<method>/<metric>`,
    also logged to the config's loggers (`log_comparison`)."""
    unknown = sorted(set(methods) - set(EDGE_METHODS))
    if unknown:
        raise UserError(f"task.methods: unknown method(s) {unknown}; available: {sorted(EDGE_METHODS)}.")
    require_extra("task=compare (its SID column)", "gadjid")  # before any work, not after the PFN's
    datamodule = instantiate(cfg.data, test_graphs=graphs, _convert_="all")
    datamodule.select_test_sets(sets, "task.sets")
    datamodule.setup("test")
    metrics: dict[str, float] = {}
    for name in sets:
        batches = datamodule.test_batches[name]
        rows = {"pfn": run_pfn(Path(checkpoint), batches)}
        reliability = rows["pfn"].pop("reliability")
        for method in methods:
            log.info("compare: %s on %s", method, name)
            rows[method] = run_method(method, batches)
        for method, row in rows.items():
            metrics.update({f"compare/{name}/{method}/{key}": value for key, value in row.items()})
        log_comparison(cfg, checkpoint, name, graphs, rows, reliability)
    return metrics


def log_comparison(
    cfg: DictConfig,
    checkpoint: str,
    set_name: str,
    graphs: int,
    rows: Mapping[str, Mapping[str, float]],
    reliability: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Each method's metrics on one set to the config's loggers, like every other run, and the PFN's reliability
    diagram (`reliability`: its pooled pairs' bins) to `<output_dir>/figures/reliability_<set>.png` and TensorBoard.

    Every logger gets the scalars `compare/<set>/<method>/<metric>` (time per graph included). A TensorBoard
    logger also gets one HParams session per method under `<log_dir>/<set>/<method>` (hparams: method, set,
    graphs, checkpoint; metrics `hp/<metric>`), so the HParams tab lines the methods up side by side, and the
    figure as `compare/<set>/reliability`.
    """
    loggers = instantiate_loggers(cfg)
    fig = reliability_figure({"causal PFN": reliability}, f"{set_name}: PFN edge probabilities (ECE in the scalars)")
    save_figure(fig, Path(cfg.paths.output_dir) / "figures" / f"reliability_{set_name}.png", close=False)
    log_figure(loggers, f"compare/{set_name}/reliability", fig)
    for logger in loggers:
        for method, row in rows.items():
            logger.log_metrics({f"compare/{set_name}/{method}/{k}": v for k, v in row.items()}, step=0)
        logger.save()
        if isinstance(logger, TensorBoardLogger):
            for method, row in rows.items():
                hparams = {"method": method, "set": set_name, "graphs": graphs, "checkpoint": str(checkpoint)}
                with SummaryWriter(str(Path(logger.log_dir) / set_name / method)) as writer:
                    writer.add_hparams(hparams, {f"hp/{k}": v for k, v in row.items()}, run_name=".")


# --- out of prior: tables from external generators (causal_engine.discovery.external) ------------------------

EdgeMethod = Callable[[GraphData], tuple[np.ndarray, np.ndarray]]
# Methods that standardise the observational columns themselves (or are scale-free), so their result on a
# standardised copy is the raw result: the benchmark reuses it instead of running them twice.
SCALE_FREE = frozenset({"PC", "GES", "NOTEARS", "abs-corr", "partial-corr"})
# Methods that only differ from another on interventional data (GIES without regimes is GES): run on sets with
# regimes only.
REGIMES_ONLY = frozenset({"GIES"})
# Methods whose answer is a CPDAG (undirected edges kept for the SID), or an unoriented skeleton (no SID).
CPDAGS = frozenset({"PC", "GES", "GIES"})
SKELETONS = frozenset({"abs-corr", "partial-corr"})
# The boosted pairwise model that reads every table's copula scores (`pairwise.copula_table`): as invariant to
# monotone transforms as the PFN, so the PFN's gap to it is the part of the boosted gap that scales do not explain.
BOOSTED_COPULA = "boosted (copula input)"
# Methods whose scores are edge probabilities: their calibration (ECE) is reported.
PROBABILISTIC = frozenset({"causal PFN", "causal PFN (uncalibrated)", "boosted", BOOSTED_COPULA})


def graph_batch(g: GraphData) -> DiscoveryBatch:
    """One table as the PFN sees a user's table in `task=discover` (each row marked with its regime's targets)."""
    d = g.observational.shape[1]
    parts = [g.observational, *(x for _, x in g.regimes)]
    targets = np.zeros((sum(len(p) for p in parts), d), dtype=bool)  # [N, d]
    start = len(g.observational)
    for regime_targets, x in g.regimes:
        targets[start : start + len(x), regime_targets] = True
        start += len(x)
    frame = pd.DataFrame(np.concatenate(parts), columns=[f"X{k}" for k in range(d)])
    batch, _ = table_batch(frame, targets, max_values_per_target=0)
    return batch


def pfn_method(
    checkpoint: str | Path, threshold: float = 0.5, calibration: TableCalibration | None = None
) -> EdgeMethod:
    """The PFN at `checkpoint` with the EDGE_METHODS interface: (edge probabilities, `graphs.predicted_edges` at
    `threshold`), the probabilities mapped through `calibration` when one is given."""
    net = load_pfn(checkpoint)

    def method(g: GraphData) -> tuple[np.ndarray, np.ndarray]:
        probs, _ = predict(net, graph_batch(g), calibration=calibration)
        p = probs.numpy().astype(float)
        return p, predicted_edges(probs, threshold).numpy()

    return method


def table_auroc(score: np.ndarray, true: np.ndarray) -> float:
    """Edge AUROC of one table over its off-diagonal pairs (NaN without both classes)."""
    off = ~np.eye(true.shape[0], dtype=bool)
    t = torch.tensor(true[off], dtype=torch.long)
    if t.min() == t.max():
        return float("nan")
    return float(binary_auroc(torch.tensor(score[off], dtype=torch.float64), t))


def score_tables(
    method: EdgeMethod, tables: Sequence[GraphData], probabilistic: bool = False, name: str = ""
) -> dict[str, Any]:
    """Pooled edge metrics (`edge_scores`), mean seconds per table, each table's AUROC (`per_table`), and for a
    `probabilistic` method the expected calibration error and reliability bins of the pooled pairs (`ece`,
    `reliability`; NaN and None otherwise) and the mean and 95th percentile of the ECE a calibrated model would
    show on the same pairs (`ece_if_calibrated`, `ece_if_calibrated_q95`: `metrics.calibrated_ece_band`)."""
    results, aurocs, seconds = [], [], 0.0
    for g in tables:
        start = time.process_time()
        score, pred = method(g)
        seconds += time.process_time() - start
        results.append((score, pred, g.adjacency))
        aurocs.append(table_auroc(score, g.adjacency))
    row = {**edge_scores(results, name), "s_per_graph": seconds / len(tables), "per_table": aurocs}
    row["ece"], row["reliability"] = float("nan"), None
    row["ece_if_calibrated"] = row["ece_if_calibrated_q95"] = float("nan")
    if probabilistic:
        probs, labels = pooled_pairs(results)
        row["ece"] = M.expected_calibration_error(probs, labels)
        row["reliability"] = M.reliability(probs, labels)
        row["ece_if_calibrated"], row["ece_if_calibrated_q95"] = M.calibrated_ece_band(probs)
    return row


def top_k_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the k highest-scored ordered pairs of `a` that are also among the k highest of `b`."""
    off = ~np.eye(a.shape[0], dtype=bool)
    top_a = set(np.argsort(-a[off], kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b[off], kind="stable")[:k].tolist())
    return len(top_a & top_b) / max(k, 1)


def monotone_row(method: EdgeMethod, tables: Sequence[GraphData]) -> dict[str, float]:
    """Raw vs log vs rank copies of each table: mean AUROC per copy, the mean largest AUROC gap between copies,
    and the mean top-k agreement of each copy with the raw one (k = the table's true edge count)."""
    aurocs: dict[str, list[float]] = {"raw": [], "log": [], "rank": []}
    gaps, agree_log, agree_rank = [], [], []
    for g in tables:
        scores = {name: method(copy)[0] for name, copy in monotone_copies(g).items()}
        values = {name: table_auroc(s, g.adjacency) for name, s in scores.items()}
        for name, v in values.items():
            aurocs[name].append(v)
        gaps.append(max(values.values()) - min(values.values()))
        k = int(g.adjacency.sum())
        agree_log.append(top_k_agreement(scores["raw"], scores["log"], k))
        agree_rank.append(top_k_agreement(scores["raw"], scores["rank"], k))
    return {
        **{f"auroc_{name}": float(np.nanmean(v)) for name, v in aurocs.items()},
        "auroc_gap": float(np.nanmean(gaps)),
        "topk_log": float(np.mean(agree_log)),
        "topk_rank": float(np.mean(agree_rank)),
    }


def discrete_row(
    method: EdgeMethod, tables: Sequence[GraphData], seed: int = 0, continuous: Sequence[float] | None = None
) -> dict[str, float]:
    """Each table and its `external.discretised` copy (table k with seed + k): mean AUROC of both, and the mean
    largest change of any edge score when the copy's rows are sorted by its column with the fewest values
    (`external.sorted_rows`; zero for a method that does not read the row order). `continuous`: the tables' own
    AUROCs when the caller has them (`table_aurocs`), else they are scored here."""
    if continuous is None:
        continuous = [table_auroc(method(g)[0], g.adjacency) for g in tables]
    discrete, moved = [], []
    for k, g in enumerate(tables):
        copy = discretised(g, seed + k)
        tied = int(np.argmin([len(np.unique(c)) for c in copy.observational.T]))  # a discretised column
        score = method(copy)[0]
        discrete.append(table_auroc(score, g.adjacency))
        moved.append(float(np.abs(method(sorted_rows(copy, tied))[0] - score).max()))
    return {
        "auroc_continuous": float(np.nanmean(continuous)),
        "auroc_discrete": float(np.nanmean(discrete)),
        "row_order_change": float(np.mean(moved)),
    }


def tables_digest(tables: Sequence[GraphData]) -> str:
    """A short digest of the tables' values, regimes and true graphs: what a cached result is valid for."""
    h = hashlib.sha256()
    for g in tables:
        for part in (g.observational, g.adjacency, *(x for _, x in g.regimes)):
            h.update(np.ascontiguousarray(part, dtype=float).tobytes())
        h.update(repr([list(t) for t, _ in g.regimes]).encode())
    return h.hexdigest()[:12]


def out_of_prior(
    methods: Mapping[str, EdgeMethod], sets: Mapping[str, Sequence[GraphData]], cache: Path | None = None
) -> list[dict[str, Any]]:
    """Every method on every set, raw and with each column standardised first (`external.standardise_table`).

    Rows: {method, set, scaling, shd, sid, auroc, auprc, f1, s_per_graph, per_table}. A `SCALE_FREE` method's
    standardised row is its raw row (it standardises its input itself); a `REGIMES_ONLY` method runs only on
    sets with interventional regimes. With `cache`, a classical method's (an `EDGE_METHODS` name: deterministic
    given its tables) rows are kept in `cache/<set>-<digest>/<method>.json` and read back instead of rerun, so a
    stopped benchmark resumes and a new checkpoint is compared without rerunning the slow baselines; the digest
    (`tables_digest`) is of the tables themselves, so other settings or a changed generator never read stale rows.
    """
    rows = []
    for set_name, tables in sets.items():
        standardised = [standardise_table(g) for g in tables]
        set_cache = cache / f"{set_name}-{tables_digest(tables)}" if cache is not None else None
        has_regimes = any(g.regimes for g in tables)
        for name, method in methods.items():
            if name in REGIMES_ONLY and not has_regimes:
                continue
            file = set_cache / f"{name}.json" if set_cache is not None and name in EDGE_METHODS else None
            cached = json.loads(file.read_text()) if file is not None and file.is_file() else None
            if cached is not None and all("sid" in row for row in cached):  # rows from before SID are rerun
                raw, std = cached
            else:
                probabilistic = name in PROBABILISTIC
                raw = score_tables(method, tables, probabilistic, name)
                std = raw if name in SCALE_FREE else score_tables(method, standardised, probabilistic, name)
                if file is not None:
                    file.parent.mkdir(parents=True, exist_ok=True)
                    partial = file.with_suffix(".part")
                    partial.write_text(json.dumps([raw, std]))
                    partial.replace(file)  # atomic: a stop mid-write leaves no half file
            rows.append({"method": name, "set": set_name, "scaling": "raw", **raw})
            rows.append({"method": name, "set": set_name, "scaling": "standardised", **std})
            log.info("out of prior: %s on %s (AUROC raw %.3f, std %.3f)", name, set_name, raw["auroc"], std["auroc"])
    return rows


def _rows_of(rows: Sequence[Mapping[str, Any]], method: str) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(r["set"], r["scaling"]): r for r in rows if r["method"] == method}


def table_aurocs(rows: Sequence[Mapping[str, Any]], method: str, sets: Sequence[str]) -> list[float]:
    """`method`'s AUROC on each raw table of `sets`, in their order (from `out_of_prior` rows' `per_table`)."""
    raw = {set_name: r for (set_name, scaling), r in _rows_of(rows, method).items() if scaling == "raw"}
    return [a for set_name in sets for a in raw[set_name]["per_table"]]


def mean_difference(rows: Sequence[Mapping[str, Any]], other: str, key: str, pfn: str = "causal PFN") -> float:
    """The PFN's mean `key` over its rows minus `other`'s over the same (set, scaling) rows; NaN when `other` was
    not run."""
    mine, theirs = _rows_of(rows, pfn), _rows_of(rows, other)
    if not theirs:
        return float("nan")
    return float(np.mean([r[key] for r in mine.values()]) - np.mean([theirs[k][key] for k in mine if k in theirs]))


def goals(rows: Sequence[Mapping[str, Any]], pfn: str = "causal PFN") -> dict[str, float]:
    """Issue #18's goals from `out_of_prior` rows (raw and standardised rows alike): the PFN's mean AUROC minus
    the boosted baseline's, |corr|'s and |partial corr|'s, the share of tables where the PFN's AUROC beats
    |corr|'s, and the PFN's mean SHD minus PC's and GES's (NaN when a method was not run)."""
    mine = _rows_of(rows, pfn)
    out = {f"auroc_minus_{m}": mean_difference(rows, m, "auroc", pfn) for m in ("boosted", "abs-corr", "partial-corr")}
    corr = _rows_of(rows, "abs-corr")
    wins = [
        a > b
        for k, r in mine.items()
        if k in corr
        for a, b in zip(r["per_table"], corr[k]["per_table"], strict=True)
        if not (np.isnan(a) or np.isnan(b))
    ]
    out["share_ahead_of_abs_corr"] = float(np.mean(wins)) if wins else float("nan")
    out.update({f"shd_minus_{m}": mean_difference(rows, m, "shd", pfn) for m in ("PC", "GES")})
    return out


def per_table_differences(
    rows: Sequence[Mapping[str, Any]], other: str, pfn: str = "causal PFN"
) -> tuple[float, float]:
    """The PFN's AUROC minus `other`'s, table by table (raw and standardised copies averaged), as a mean over
    sets of each set's mean, with its standard error: sqrt(sum_s var_s / n_s) / S for S sets of n_s tables.

    The goals compare pooled AUROCs, which have no simple standard error; this per-table version says whether a
    gap of a few thousandths is larger than the spread of the tables (NaN when `other` was not run)."""
    diffs: dict[str, dict[int, list[float]]] = {}
    by_key = {(r["method"], r["set"], r["scaling"]): r for r in rows}
    for (method, set_name, scaling), r in by_key.items():
        theirs = by_key.get((other, set_name, scaling))
        if method != pfn or theirs is None:
            continue
        for k, (a, b) in enumerate(zip(r["per_table"], theirs["per_table"], strict=True)):
            if not (np.isnan(a) or np.isnan(b)):
                diffs.setdefault(set_name, {}).setdefault(k, []).append(a - b)
    per_set = [np.array([np.mean(v) for v in tables.values()]) for tables in diffs.values()]
    if not per_set:
        return float("nan"), float("nan")
    variance = sum(x.var(ddof=1) / len(x) if len(x) > 1 else 0.0 for x in per_set)
    return float(np.mean([x.mean() for x in per_set])), float(np.sqrt(variance) / len(per_set))


def pooled_reliability(
    rows: Sequence[Mapping[str, Any]], method: str, scaling: str = "raw"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`method`'s reliability bins pooled over every set's `scaling` rows (count-weighted bin means)."""
    parts = [r["reliability"] for r in rows if r["method"] == method and r["scaling"] == scaling]
    count = sum(np.asarray(c) for _, _, c in parts)
    confidence = sum(np.nan_to_num(f) * c for f, _, c in parts)
    rate = sum(np.nan_to_num(r) * c for _, r, c in parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return confidence / count, rate / count, count


def _fmt(value: float, digits: int = 3) -> str:
    return "—" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _set_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines: one row per set and method, raw | standardised."""
    by_key = {(r["method"], r["set"], r["scaling"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sets = list(dict.fromkeys(r["set"] for r in rows))
    lines = [
        "| set | method | AUROC raw | AUROC std | AUPRC raw | AUPRC std | SHD raw | SHD std | SID raw | ECE raw "
        "| ECE if calibrated (95 %) | s/graph |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sets:
        for m in methods:
            if (m, s, "raw") not in by_key:
                continue
            raw, std = by_key[(m, s, "raw")], by_key[(m, s, "standardised")]
            cells = [_fmt(raw["auroc"]), _fmt(std["auroc"]), _fmt(raw["auprc"]), _fmt(std["auprc"])]
            cells += [_fmt(raw["shd"], 1), _fmt(std["shd"], 1), _fmt(raw["sid"]), _fmt(raw["ece"])]
            band = raw.get("ece_if_calibrated", float("nan"))  # optional: rows without a band (cached, hand-made)
            cells.append("—" if np.isnan(band) else f"{band:.3f} ({raw['ece_if_calibrated_q95']:.3f})")
            cells.append(_fmt(raw["s_per_graph"], 4))
            lines.append(f"| {s} | {m} | " + " | ".join(cells) + " |")
    return lines


def _monotone_table(monotone: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown lines: each method's `monotone_row`."""
    lines = ["| method | AUROC raw | AUROC log | AUROC rank | mean max gap | top-k raw=log | top-k raw=rank |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for m, r in monotone.items():
        keys = ("auroc_raw", "auroc_log", "auroc_rank", "auroc_gap", "topk_log", "topk_rank")
        lines.append(f"| {m} | " + " | ".join(_fmt(r[k]) for k in keys) + " |")
    return lines


def _discrete_table(discrete: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown lines: each method's `discrete_row`."""
    lines = ["| method | AUROC continuous | AUROC discretised | row-order change |", "|---|---|---|---|"]
    for m, r in discrete.items():
        keys = ("auroc_continuous", "auroc_discrete", "row_order_change")
        lines.append(f"| {m} | " + " | ".join(_fmt(r[k]) for k in keys) + " |")
    return lines


def real_data_report(rows: Sequence[Mapping[str, Any]], monotone: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: the measured data sets' rows (`out_of_prior` on `external.real_table`s) and their raw vs log vs
    rank copies, apart from the simulated sets' means and goals (one table each weighs little in a mean)."""
    lines = ["Measured data (`external.real_table`; not in the means or goals above):", "", *_set_table(rows)]
    lines += ["", "Its raw vs log vs rank copies:", "", *_monotone_table(monotone)]
    return "\n".join(lines)


def out_of_prior_report(
    rows: Sequence[Mapping[str, Any]],
    monotone: Mapping[str, Mapping[str, float]],
    summary: Mapping[str, float],
    discrete: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """Markdown: per-set table (raw | standardised), per-method means over sets, the monotone row, the discrete
    columns' row (`discrete_row`, when given), the goals."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = _set_table(rows)
    lines += ["", "Mean over sets (each set weighted equally):", ""]
    columns = (("AUROC", "auroc", 3), ("AUPRC", "auprc", 3), ("SHD", "shd", 1), ("SID", "sid", 3), ("ECE", "ece", 3))
    columns += (("ECE if calibrated", "ece_if_calibrated", 3),)
    lines += ["| method | sets | " + " | ".join(f"{c} {s}" for c, _, _ in columns for s in ("raw", "std")) + " |"]
    lines += ["|---|---|" + "---|" * 2 * len(columns)]
    for m in methods:
        cells = []
        for _, key, digits in columns:
            for scaling in ("raw", "standardised"):
                values = [r.get(key, float("nan")) for r in rows if r["method"] == m and r["scaling"] == scaling]
                cells.append(_fmt(_nanmean(values), digits))
        count = sum(1 for r in rows if r["method"] == m and r["scaling"] == "raw")
        lines.append(f"| {m} | {count} | " + " | ".join(cells) + " |")
    lines += ["", "Monotone transforms (raw vs log vs rank copies of each table; top-k = true edge count):", ""]
    lines += _monotone_table(monotone)
    if discrete:
        levels = ", ".join(map(str, DISCRETE_LEVELS))
        header = (
            f"Discrete columns (each table with {DISCRETE_SHARE:.0%} of its columns cut into {levels} ordered levels, "
            "`external.discretised`; row-order change: the mean largest move of an edge score when the rows are "
            "sorted by such a column):"
        )
        lines += ["", header, "", *_discrete_table(discrete)]
    lines += ["", "Goals (issue #18; raw and standardised rows together):", ""]
    targets = {
        "auroc_minus_boosted": (">=", 0.0),
        "auroc_minus_abs-corr": (">=", 0.10),
        "auroc_minus_partial-corr": (">=", 0.05),
        "share_ahead_of_abs_corr": (">=", 0.90),
        "shd_minus_PC": ("<", 0.0),
        "shd_minus_GES": ("<", 0.0),
    }
    for key, value in summary.items():
        op, goal = targets[key]
        met = value >= goal if op == ">=" else value < goal
        verdict = "not run" if np.isnan(value) else "met" if met else "missed"
        line = f"- {key}: {_fmt(value)} (goal {op} {goal:.2f}: {verdict})"
        if key.startswith("auroc_minus_"):
            diff, se = per_table_differences(rows, key.removeprefix("auroc_minus_"))
            line += f"; per table {_fmt(diff)} ± {_fmt(se)} (standard error)"
        lines.append(line)
    if BOOSTED_COPULA in methods:
        pooled = mean_difference(rows, BOOSTED_COPULA, "auroc")
        diff, se = per_table_differences(rows, BOOSTED_COPULA)
        lines.append(
            f"- no goal: auroc_minus_{BOOSTED_COPULA}: {_fmt(pooled)}; per table {_fmt(diff)} ± {_fmt(se)} "
            "(standard error)"
        )
    return "\n".join(lines)
