"""`task=query`: fit a StructuralMLP to a user's table and graph, answer the queries in the config, write CSVs.

    causal-engine task=query data=table data.path=data.csv data.graph_path=edges.csv \
        '+task.interventional={raise_x: {x: 1.0}}' '+task.counterfactual={x_plus_1: {x: {shift: 1.0}}}'

Interventional answers (`interventional.csv`): for each query, the mean and SD of every variable under the
intervention, over samples that keep each data row's abducted noise. Counterfactual answers
(`counterfactual.csv`): every row (or `rows`) under each query, with its factual values alongside.
With `data.regime_column=COL`, a row whose COL names a variable (several joined by '+') was produced by a hard
intervention on it: that variable's mechanism is not fitted on the row (its value still feeds its
children), and validation uses observational rows only. Everything is validated before fitting, and files
are written only when every answer is computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from causal_engine.errors import UserError
from causal_engine.intervene.data import ArrayDataModule, GraphInfo
from causal_engine.intervene.do import Interventions
from causal_engine.intervene.models import StructuralMLP
from causal_engine.intervene.module import InterveneModule
from causal_engine.tables import TableSource
from causal_engine.train import build_trainer, collect_metrics


class QueryError(UserError):
    """A query in the config cannot be answered as written."""


def _parse_queries(kind: str, queries: Any, names: Sequence[str]) -> dict[str, Interventions]:
    if queries is None:
        return {}
    if not isinstance(queries, Mapping):
        raise QueryError(
            f"task.{kind} must map a query name to interventions, e.g. "
            f"{{raise_x: {{{names[0]}: 1.0}}}}; got {queries!r}"
        )
    parsed = {}
    for qname, spec in queries.items():
        if not isinstance(spec, Mapping) or not spec:
            raise QueryError(f"task.{kind}.{qname} must map variables to a value or {{shift: d}}, got {spec!r}")
        for variable, value in spec.items():
            if variable not in names:
                raise QueryError(
                    f"task.{kind}.{qname} intervenes on {variable!r}, which is not a column of "
                    f"the data; columns: {list(names)}"
                )
            number = value.get("value", value.get("shift")) if isinstance(value, Mapping) else value
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise QueryError(f"task.{kind}.{qname}.{variable} must be a number or {{shift: number}}, got {value!r}")
        try:
            parsed[str(qname)] = Interventions.parse(dict(spec), names)
        except ValueError as err:
            raise QueryError(f"task.{kind}.{qname}: {err}") from err
    return parsed


def _regime_mask(regimes: pd.Series, names: Sequence[str], column: str) -> torch.Tensor:
    """cut [N, D] bool from a regime column: empty = observational, else the variable(s) a hard
    intervention set in that row (several joined by '+')."""
    cut = torch.zeros(len(regimes), len(names), dtype=torch.bool)
    for row, text in enumerate(regimes):
        for variable in filter(None, (v.strip() for v in text.split("+"))):
            if variable not in names:
                raise QueryError(
                    f"data.regime_column '{column}', row {row + 1}: {variable!r} is not a variable of the "
                    f"data (leave the cell empty for an observational row); variables: {list(names)}"
                )
            cut[row, names.index(variable)] = True
    return cut


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
    cut = _regime_mask(regimes, names, regime) if regimes is not None else None
    do_queries = _parse_queries("interventional", interventional, names)
    cf_queries = _parse_queries("counterfactual", counterfactual, names)
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
