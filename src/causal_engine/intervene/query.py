"""`task=query`: fit a StructuralMLP to a user's table and graph, answer the queries in the config, write CSVs.

    causal-engine task=query data=table data.path=data.csv data.graph_path=edges.csv \
        '+task.interventional={raise_x: {x: 1.0}}' '+task.counterfactual={x_plus_1: {x: {shift: 1.0}}}'

Interventional answers (`interventional.csv`): for each query, the mean and SD of every variable under the
intervention, over samples that keep each data row's abducted noise. Counterfactual answers
(`counterfactual.csv`): every row (or `rows`) under each query, with its factual values alongside.
Queries use the intervention grammar of `causal_engine.interventions`; the regime column that of
`causal_engine.tables.regime_targets`. With `data.regime_column=COL`, a row whose COL names a variable (several
joined by '+') was produced by a hard intervention on it: that variable's mechanism is not fitted on the row
(its value still feeds its children), and validation uses observational rows only. Everything is validated
before fitting, and files are written only when every answer is computed.

The fit stops on its held-out loss (`task.convergence`, see `causal_engine.convergence`) and reports
whether it converged (`fit/converged`, `fit/epochs`, `fit/best_val_loss` in metrics.json and on the
console; a warning names the key to raise when it did not). Every answer has an interval: `task.bootstrap`
refits on Poisson-resampled rows (`intervene.bootstrap`) give each answer's standard error `se`, and the
interval is the answer ± z · se at `task.level` (`ci_low`, `ci_high`; for counterfactuals
`<variable>_cf_low`, `<variable>_cf_high`). `task.bootstrap=0` turns the intervals off.

The intervals carry the noise of the rows and the fit, not the error of extrapolating: an intervention that
sets a variable to a value its parents never produce in the table (do(x1 = v) where x1 | x0 has little
spread) asks the children's fitted mechanisms about inputs they were never shown, and any answer there is
the network's guess. Each answer says where that happens: `outside_support` is the share of rows (for a
counterfactual, per row) whose intervened value needs noise outside the central `support` share of the
noise the fit abducts from the observational rows, given the parents as they are under the intervention;
a warning names every query above `support_warning`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from causal_engine.convergence import Convergence
from causal_engine.errors import UserError
from causal_engine.graphs import describe_dependences, unexplained_dependences
from causal_engine.intervene.bootstrap import BootstrapEnsemble, fit_ensemble, poisson_counts
from causal_engine.intervene.data import ArrayDataModule, GraphInfo
from causal_engine.intervene.do import Interventions
from causal_engine.intervene.graph_discovery import DISCOVER, GraphDiscovery, edge_adjacency
from causal_engine.intervene.models import StructuralMLP
from causal_engine.intervene.module import InterveneModule, build_net
from causal_engine.interventions import parse_named_interventions
from causal_engine.tables import TableSource, regime_targets
from causal_engine.train import build_trainer, collect_metrics

log = logging.getLogger(__name__)


class QueryError(UserError):
    """A query in the config cannot be answered as written."""


def _queries(kind: str, queries: Mapping | None, names: Sequence[str]) -> dict[str, Interventions]:
    parsed = parse_named_interventions(queries, names, f"task.{kind}")
    return {qname: Interventions.parse(spec, names) for qname, spec in parsed.items()}


@torch.no_grad()
def _answers(
    net: nn.Module,
    x: Tensor,
    weight: Tensor,
    do_queries: Mapping[str, Interventions],
    cf_queries: Mapping[str, Interventions],
    rows: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """One network's answers: interventional means and SDs [Q, D] over the reference rows x [N, D] weighted
    by `weight` [N], and the counterfactuals [C, len(rows), D] of the table's `rows`."""
    # float64 with integer counts: a hard-intervened variable's mean is its value exactly, its SD 0.
    w, total = weight.double()[:, None], float(weight.sum())  # [N, 1]
    means, sds = [], []
    for iv in do_queries.values():
        samples = net.interventional(x, iv).double()  # [N, D]: each row's noise, intervened mechanisms
        mean = (w * samples).sum(0) / total  # [D]
        means.append(mean)
        sds.append(((w * (samples - mean) ** 2).sum(0) / max(total - 1, 1)).sqrt())
    empty = x.new_zeros(0, x.shape[1])
    cfs = [net.counterfactual(x[list(rows)], iv) for iv in cf_queries.values()]
    return (
        torch.stack(means) if means else empty,
        torch.stack(sds) if sds else empty,
        torch.stack(cfs) if cfs else x.new_zeros(0, len(rows), x.shape[1]),
    )


def _noise_range(net: StructuralMLP, x: Tensor, cut: Tensor | None, support: float) -> tuple[Tensor, Tensor]:
    """The central `support` share [low, high] [D] of each variable's abducted noise over the rows x [N, D]
    where it was not intervened (`cut` [N, D])."""
    with torch.no_grad():
        noise = net.abduct(x).double()  # [N, D] standardised
    if cut is not None:
        noise = noise.masked_fill(cut, float("nan"))
    tail = (1.0 - support) / 2
    return torch.nanquantile(noise, tail, dim=0).float(), torch.nanquantile(noise, 1.0 - tail, dim=0).float()


@torch.no_grad()
def _outside_support(net: StructuralMLP, samples: Tensor, iv: Interventions, low: Tensor, high: Tensor) -> Tensor:
    """[N] bool: rows whose value of an intervened variable, in `samples` [N, D] (the variables under `iv`),
    needs noise outside [low, high] [D] given its parents as they are under `iv`."""
    noise = net.abduct(samples)  # [N, D]: the noise each value would need
    outside = (noise < low) | (noise > high)
    return (outside & iv.touched_mask(len(samples), samples.device)).any(1)


def _graph(
    source: TableSource, frame: pd.DataFrame, regimes: pd.Series | None, discovery: GraphDiscovery | None, seed: int
) -> tuple[np.ndarray, pd.DataFrame | None]:
    """The adjacency [D, D] the model follows: the edge list of `data.graph_path`, or with
    `data.graph_path=discover` the PFN's graph refined on the observational rows (also returned as the edge
    list to write as graph_used.csv)."""
    names = list(frame.columns)
    if source.graph_path is None:
        raise UserError(
            "data.graph_path is not set: give an edge list CSV with columns source,target "
            "(`data.graph_path=edges.csv`), or let the shipped causal PFN find the graph: `data.graph_path=discover`."
        )
    if source.graph_path != DISCOVER:
        return source.graph(names, require_all=True), None
    if discovery is None:
        raise UserError("data.graph_path=discover needs task.discovery (see conf/task/query.yaml)")
    observational = frame if regimes is None else frame[(regimes == "").to_numpy()]
    with torch.random.fork_rng():  # building the PFN draws random numbers: keep the fit's seed stream as it was
        edges = discovery(observational, seed)
    shown = ", ".join(f"{s}->{t}" for s, t in zip(edges.source, edges.target, strict=True)) or "none"
    log.info("graph: discovered by the causal PFN (%s), refined on the data: %d edges: %s",
             discovery.checkpoint, len(edges), shown)  # fmt: skip
    return edge_adjacency(edges, names), edges


def _fit_point(
    cfg: DictConfig, module: InterveneModule, datamodule: ArrayDataModule, convergence: Convergence
) -> dict[str, float]:
    """Fit the model to convergence; its metrics, the convergence report's included (`fit/...`)."""
    callbacks = convergence.callbacks()
    max_epochs = convergence.ceiling(len(datamodule.train_x), datamodule.batch_size)
    trainer = build_trainer(cfg, extra_callbacks=callbacks, max_epochs=max_epochs)
    trainer.fit(module, datamodule=datamodule)
    report = convergence.report(callbacks, trainer.current_epoch, max_epochs)
    log.info("fit: %s", report.summary())
    if report.warning:
        log.warning("fit: %s", report.warning)
    return {**collect_metrics(trainer), **report.as_metrics("fit")}


def _bootstrap_answers(
    module: InterveneModule,
    datamodule: ArrayDataModule,
    x: Tensor,
    cut: Tensor,
    replicates: int,
    convergence: Convergence,
    seed: int,
    answer: Any,
    fast_dev_run: bool = False,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Each bootstrap replicate's answers (`answer(net, weight)`), the replicates fitted together, each
    stopping on its own out-of-bag rows of the table x [N, D] (observational rows only, as for the point fit)."""
    start = time.time()
    loc, scale = datamodule.scaler()
    nets = []
    for r in range(replicates):
        with torch.random.fork_rng():
            torch.manual_seed(seed + 1 + r)
            net = build_net(module.net_factory, datamodule.graph)
        net.set_scaler(loc, scale)
        nets.append(net)
    counts = poisson_counts(replicates, len(x), seed)  # [R, N] over the table's rows
    fitted = torch.zeros(len(x), dtype=torch.bool)
    fitted[datamodule.train_rows] = True
    held_out = ((counts == 0) | ~fitted) & ~cut.any(1)  # [R, N]: out of the bag (or the point fit's validation)
    x_train, cut_train = datamodule.train_set.tensors[:2]
    ensemble = BootstrapEnsemble(
        nets,
        module.optimizer_factory,
        x_train,
        cut_train,
        counts[:, datamodule.train_rows],
        x,
        torch.zeros_like(cut),
        held_out,
        datamodule.batch_size,
    )
    epochs = fit_ensemble(ensemble, convergence, fast_dev_run=fast_dev_run)
    found = [answer(ensemble.replicate(r), counts[r]) for r in range(replicates)]
    log.info("bootstrap: %d replicates, %d epochs, %.1f s", replicates, epochs, time.time() - start)
    return found


def query(
    cfg: DictConfig,
    interventional: Mapping | None = None,
    counterfactual: Mapping | None = None,
    rows: Sequence[int] | None = None,
    val_fraction: float = 0.2,
    convergence: Convergence | None = None,
    bootstrap: int = 20,
    level: float = 0.95,
    discovery: GraphDiscovery | None = None,
    support: float = 0.99,
    support_warning: float = 0.1,
) -> dict[str, float]:
    """Fit `cfg.model` (a StructuralMLP module) on `cfg.data` (a `TableSource`) to convergence and answer the
    queries, each with a bootstrap interval (`bootstrap` replicates, coverage `level`) and the share of rows
    it takes outside the table's support (`support`; module docstring). With `data.graph_path=discover` the
    graph comes from `discovery` (the PFN, refined; see `graph_discovery`)."""
    source: TableSource = instantiate(cfg.data)
    if not isinstance(source, TableSource):
        raise UserError(
            "task=query reads a user's table: use `data=table data.path=FILE.csv data.graph_path=EDGES.csv`."
        )
    if cfg.get("model") is None:
        raise UserError("task=query needs a structural model: add `model=structural_mlp`.")
    if bootstrap == 1:
        raise QueryError("task.bootstrap=1 gives no spread: use 0 (no intervals) or at least 2 (e.g. 20).")
    if not 0.0 < support < 1.0:
        raise QueryError(f"task.support must be in (0, 1) (the central share of the noise, e.g. 0.99), got {support}")
    if not 0.0 <= support_warning <= 1.0:
        raise QueryError(f"task.support_warning must be a share in [0, 1] (e.g. 0.1), got {support_warning}")
    convergence = convergence if convergence is not None else Convergence()
    interventional = (
        OmegaConf.to_container(interventional) if isinstance(interventional, DictConfig) else interventional
    )
    counterfactual = (
        OmegaConf.to_container(counterfactual) if isinstance(counterfactual, DictConfig) else counterfactual
    )
    regime = source.regime_column
    frame = source.load(min_rows=10, text_columns=[regime] if regime else ())
    regimes = frame.pop(regime) if regime else None
    names = list(frame.columns)
    adjacency, graph_used = _graph(source, frame, regimes, discovery, int(cfg.seed))
    observational = frame if regimes is None else frame[(regimes == "").to_numpy()]
    missed = unexplained_dependences(observational, adjacency)
    if missed:
        log.warning(
            "graph: the graph used (%s) makes %d pair(s) of variables independent that the table's observational "
            "rows show dependent (Spearman, Bonferroni at 0.01): %s. The model cannot reproduce these "
            "dependences: an intervention on one of a pair shows no effect on the other. Give an edge list that "
            "explains them (data.graph_path=EDGES.csv).",
            "discovered" if graph_used is not None else source.graph_path, len(missed), describe_dependences(missed),
        )  # fmt: skip
    cut = torch.from_numpy(regime_targets(regimes, names, regime)) if regimes is not None else None  # [N, D]
    do_queries = _queries("interventional", interventional, names)
    cf_queries = _queries("counterfactual", counterfactual, names)
    if not do_queries and not cf_queries:
        raise QueryError(
            "task=query has nothing to answer: give `+task.interventional={name: {var: value}}` "
            "and/or `+task.counterfactual={name: {var: {shift: d}}}`."
        )
    row_index = list(range(len(frame))) if rows is None else [int(r) for r in rows]
    bad_rows = [r for r in row_index if not 0 <= r < len(frame)]
    if bad_rows:
        raise QueryError(f"task.rows {bad_rows} are outside the table's rows 0..{len(frame) - 1}")

    x = torch.tensor(frame.to_numpy(), dtype=torch.float32)  # [N, D]
    graph = GraphInfo(names, adjacency, treatment=0, outcome=len(names) - 1)
    datamodule = ArrayDataModule(x, graph, cut, val_fraction=val_fraction, seed=int(cfg.seed))
    module: InterveneModule = instantiate(cfg.model)
    module.attach(datamodule)
    if not isinstance(module.net, StructuralMLP):
        raise UserError("task=query needs the structural model: use `model=structural_mlp` (or structural_mlp_losses).")
    metrics = _fit_point(cfg, module, datamodule, convergence)
    metrics["graph/unexplained_dependences"] = float(len(missed))

    def answer(net: nn.Module, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return _answers(net, x, weight, do_queries, cf_queries, row_index)

    net = module.net.eval()
    do_mean, do_sd, cf = answer(net, torch.ones(len(x)))  # [Q, D], [Q, D], [C, n, D]
    low, high = _noise_range(
        net, x[datamodule.train_rows], None if cut is None else cut[datamodule.train_rows], support
    )
    do_outside = {q: _outside_support(net, net.interventional(x, iv), iv, low, high) for q, iv in do_queries.items()}
    cf_outside = {
        q: _outside_support(net, cf[c], iv, low, high) for c, (q, iv) in enumerate(cf_queries.items())
    }  # [n] each
    flagged = []
    for qname, outside in (do_outside | cf_outside).items():
        share = float(outside.float().mean())
        metrics[f"query/{qname}/outside_support"] = share
        if share > support_warning:
            flagged.append(f"{qname} ({100 * share:.0f} %)")
    if flagged:
        log.warning(
            "outside the table's support: %s of the rows need an intervened value whose noise, given its parents, "
            "lies beyond the central %g of what the fit abducts; there the answers extrapolate the fitted "
            "mechanisms, and their intervals do not carry that error (task.support, task.support_warning)",
            ", ".join(flagged), support,
        )  # fmt: skip
    if bootstrap:
        cut_all = cut if cut is not None else torch.zeros_like(x, dtype=torch.bool)
        found = _bootstrap_answers(
            module, datamodule, x, cut_all, bootstrap, convergence, int(cfg.seed), answer,
            fast_dev_run=bool(cfg.trainer.get("fast_dev_run", False)),
        )  # fmt: skip
        z = NormalDist().inv_cdf(0.5 + level / 2)
        # over the replicates, of the kinds asked for (a std over an empty stack warns)
        do_se = torch.stack([f[0] for f in found]).std(0) if do_queries else None  # [Q, D]
        cf_se = torch.stack([f[2] for f in found]).std(0) if cf_queries else None  # [C, n, D]
        metrics["bootstrap/replicates"] = float(bootstrap)

    records = []
    for q, qname in enumerate(do_queries):
        for j, name in enumerate(names):
            record = {"query": qname, "variable": name, "mean": float(do_mean[q, j]), "sd": float(do_sd[q, j])}
            record["outside_support"] = metrics[f"query/{qname}/outside_support"]
            if bootstrap:
                se = float(do_se[q, j])
                record |= {"se": se, "ci_low": record["mean"] - z * se, "ci_high": record["mean"] + z * se}
                metrics[f"query/{qname}/{name}/ci_low"] = record["ci_low"]
                metrics[f"query/{qname}/{name}/ci_high"] = record["ci_high"]
            records.append(record)
            metrics[f"query/{qname}/{name}"] = record["mean"]
    cf_frames = []
    factual = frame.iloc[row_index].reset_index(drop=True)
    for c, qname in enumerate(cf_queries):
        part = pd.DataFrame({"query": qname, "row": row_index, "outside_support": cf_outside[qname].numpy()})
        for j, name in enumerate(names):
            part[f"{name}_cf"] = cf[c, :, j].numpy()
            if bootstrap:
                part[f"{name}_cf_low"] = (cf[c, :, j] - z * cf_se[c, :, j]).numpy()
                part[f"{name}_cf_high"] = (cf[c, :, j] + z * cf_se[c, :, j]).numpy()
        cf_frames.append(pd.concat([part, factual], axis=1))
    if rank_zero_only.rank != 0:
        return metrics
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if graph_used is not None:
        graph_used.to_csv(out / "graph_used.csv", index=False)
        log.info("graph: the discovered graph is in %s", out / "graph_used.csv")
    if records:
        pd.DataFrame(records).to_csv(out / "interventional.csv", index=False)
    if cf_frames:
        pd.concat(cf_frames).to_csv(out / "counterfactual.csv", index=False)
    return metrics
