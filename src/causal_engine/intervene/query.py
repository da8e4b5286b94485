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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from causal_engine.errors import UserError
from causal_engine.intervene.data import ArrayDataModule, GraphInfo
from causal_engine.intervene.do import Interventions
from causal_engine.intervene.models import StructuralMLP
from causal_engine.intervene.module import InterveneModule
from causal_engine.interventions import parse_named_interventions
from causal_engine.tables import TableSource, regime_targets
from causal_engine.train import build_trainer, collect_metrics


class QueryError(UserError):
    """A query in the config cannot be answered as written."""


def _queries(kind: str, queries: Mapping | None, names: Sequence[str]) -> dict[str, Interventions]:
    parsed = parse_named_interventions(queries, names, f"task.{kind}")
    return {qname: Interventions.parse(spec, names) for qname, spec in parsed.items()}


def query(
    cfg: DictConfig,
    interventional: Mapping | None = None,
    counterfactual: Mapping | None = None,
    rows: Sequence[int] | None = None,
    val_fraction: float = 0.2,
) -> dict[str, float]:
    """Fit `cfg.model` (a StructuralMLP module) on `cfg.data` (a `TableSource`) and answer the queries."""
    source: TableSource = instantiate(cfg.data)
    if not isinstance(source, TableSource):
        raise UserError(
            "task=query reads a user's table: use `data=table data.path=FILE.csv data.graph_path=EDGES.csv`."
        )
    if cfg.get("model") is None:
        raise UserError("task=query needs a structural model: add `model=structural_mlp`.")
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
    adjacency = source.graph(names, require_all=True)
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
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule)
    metrics = collect_metrics(trainer)

    net = module.net.eval()
    records = []
    with torch.no_grad():
        for qname, iv in do_queries.items():
            samples = net.interventional(x, iv)  # [N, D]: each row's noise, intervened mechanisms
            for j, name in enumerate(names):
                records.append(
                    {
                        "query": qname,
                        "variable": name,
                        "mean": float(samples[:, j].mean()),
                        "sd": float(samples[:, j].std()),
                    }
                )
                metrics[f"query/{qname}/{name}"] = float(samples[:, j].mean())
        cf_frames = []
        for qname, iv in cf_queries.items():
            cf = net.counterfactual(x[row_index], iv).numpy()
            part = pd.DataFrame(cf, columns=[f"{n}_cf" for n in names])
            part.insert(0, "row", row_index)
            part.insert(0, "query", qname)
            factual = frame.iloc[row_index].reset_index(drop=True)
            cf_frames.append(pd.concat([part, factual], axis=1))
    if not trainer.is_global_zero:
        return metrics
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if records:
        pd.DataFrame(records).to_csv(out / "interventional.csv", index=False)
    if cf_frames:
        pd.concat(cf_frames).to_csv(out / "counterfactual.csv", index=False)
    return metrics
