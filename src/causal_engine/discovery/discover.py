"""`task=discover`: run a trained causal PFN on a user's table.

    causal-engine task=discover data=table data.path=FILE.csv data.regime_column=COL \
        [data.graph_path=EDGES.csv] [query.do={X3: 5.0}] [task.checkpoint=PATH]

The regime column names the intervened variable of each row (empty for observational rows). Interventional
rows are grouped into regimes by target, and by the target's value when it takes at most
`max_values_per_target` distinct values (several hard interventions on one variable), else one regime per
target. The PFN standardises every variable with its observational mean and std, so units do not matter.

Writes into the run directory: adjacency.csv (edge probabilities, row = parent, column = child), edges.csv
(every ordered pair with its probability, most likely first, `predicted` = probability >= threshold),
adjacency.png; edge probabilities are calibrated when the checkpoint's json holds a calibration fitted for
its weights (`scripts/calibrate_pfn.py`); with data.graph_path, metrics against that graph; with query.do,
deltas.csv: for every observational row, the predicted counterfactual change of every variable under the
intervention, in the variables' units. Every input problem is reported before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_f1_score

from causal_engine import metrics as M
from causal_engine import plots
from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.calibration import read_calibration
from causal_engine.discovery.checkpoint import load_pfn
from causal_engine.discovery.models import PFNNet
from causal_engine.errors import UserError
from causal_engine.tables import load_graph, load_table

log = logging.getLogger(__name__)
MIN_ROWS = 10


class DiscoverError(UserError):
    """The table, regime column or query cannot be used; the message names the problem."""


def _regimes(frame: pd.DataFrame, regime: pd.Series, columns: list[str], max_values: int) -> list[pd.Index]:
    """Row indices of each interventional regime: by target, split by value when it has few distinct values."""
    groups = []
    for target in sorted(set(regime) - {""}):
        rows = regime.index[regime == target]
        values = frame.loc[rows, target]
        if values.nunique() <= max_values:
            groups += [rows[(values == v).to_numpy()] for v in sorted(values.unique())]
        else:
            groups.append(rows)
    return groups


def _take(rows: pd.Index) -> torch.Tensor:
    return torch.tensor(rows.to_numpy(), dtype=torch.long)


def table_batch(
    frame: pd.DataFrame,
    regime: pd.Series | None,
    *,
    do: Mapping[str, float] | None = None,
    max_values_per_target: int = 10,
) -> tuple[DiscoveryBatch, pd.Index]:
    """A one-graph DiscoveryBatch from a validated table; queries are the observational rows under `do`.

    Without `do` there is one query row with no intervention (only the graph is wanted).
    Returns the batch and the table index of the query rows.
    """
    columns = list(frame.columns)
    d = len(columns)
    obs_rows = frame.index if regime is None else regime.index[regime == ""]
    groups = [] if regime is None else _regimes(frame, regime, columns, max_values_per_target)
    x = torch.tensor(frame.to_numpy(), dtype=torch.float32)  # [N, d]
    s_int = max((len(g) for g in groups), default=1)
    inter = torch.zeros(1, len(groups), s_int, d)
    sample_mask = torch.zeros(1, len(groups), s_int, dtype=torch.bool)
    targets = torch.zeros(1, len(groups), d, dtype=torch.bool)
    values = torch.zeros(1, len(groups), d)
    for r, rows in enumerate(groups):
        j = columns.index(regime[rows[0]])
        inter[0, r, : len(rows)] = x[_take(rows)]
        sample_mask[0, r, : len(rows)] = True
        targets[0, r, j] = True
        values[0, r, j] = x[_take(rows), j].mean()
    query_rows = obs_rows if do else obs_rows[:1]
    query = x[_take(query_rows)][None]  # [1, Q, d]
    q_targets = torch.zeros(1, len(query_rows), d, dtype=torch.bool)
    q_values = torch.zeros(1, len(query_rows), d)
    for name, value in (do or {}).items():
        q_targets[..., columns.index(name)] = True
        q_values[..., columns.index(name)] = float(value)
    batch = DiscoveryBatch(
        observational=x[_take(obs_rows)][None],
        interventional=inter,
        int_sample_mask=sample_mask,
        regime_targets=targets,
        regime_values=values,
        regime_mask=torch.ones(1, len(groups), dtype=torch.bool),
        query=query,
        query_targets=q_targets,
        query_values=q_values,
        node_mask=torch.ones(1, d, dtype=torch.bool),
    )
    return batch, query_rows


def _check_table(frame: pd.DataFrame, regime: pd.Series | None, regime_column: str | None, max_nodes: int) -> None:
    columns = list(frame.columns)
    if len(columns) < 2:
        raise DiscoverError(f"data.path: the table has {len(columns)} numeric variable(s); discovery needs at least 2.")
    if len(columns) > max_nodes:
        raise DiscoverError(
            f"data.path: the table has {len(columns)} variables; this checkpoint supports at most "
            f"{max_nodes}. Select fewer columns or train a model with a larger net.max_nodes."
        )
    if regime is not None:
        unknown = sorted(set(regime) - {""} - set(columns))
        if unknown:
            row = int(np.flatnonzero(regime.isin(unknown).to_numpy())[0])
            raise DiscoverError(
                f"data.regime_column '{regime_column}': value(s) {unknown} (first at row {row + 1}) "
                f"are not variables of the table ({columns}); use a column name, or leave the "
                f"cell empty for an observational row."
            )
    obs = frame if regime is None else frame[(regime == "").to_numpy()]
    if len(obs) < MIN_ROWS:
        raise DiscoverError(
            f"data.path: {len(obs)} observational rows (empty data.regime_column); at least "
            f"{MIN_ROWS} are needed to standardise the variables."
        )
    constant = [c for c in columns if obs[c].std() == 0]
    if constant:
        raise DiscoverError(
            f"data.path: column(s) {constant} are constant in the observational rows; a constant "
            f"carries no causal information - drop the column(s)."
        )


def _parse_do(do: Any, columns: list[str]) -> dict[str, float] | None:
    if do is None:
        return None
    if isinstance(do, DictConfig):
        do = OmegaConf.to_container(do, resolve=True)
    if not isinstance(do, Mapping) or not do:
        raise DiscoverError(f"query.do must map variables to values, e.g. query.do={{X3: 5.0}}; got {do!r}.")
    out = {}
    for name, value in do.items():
        if name not in columns:
            raise DiscoverError(f"query.do: unknown variable '{name}'; the table's variables are {columns}.")
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise DiscoverError(f"query.do: the value for '{name}' must be a finite number, got {value!r}.")
        out[str(name)] = float(value)
    return out


@torch.no_grad()
def predict(net: PFNNet, batch: DiscoveryBatch, query_batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge probabilities [d, d] and deltas in the variables' units [Q, d].

    The context (features, trunk, graph) is computed once; only the delta layers run per chunk of
    `query_batch` queries, which bounds their memory ([query_batch, d, D] tokens) on long tables.
    """
    ctx = net.context(batch)
    deltas = [
        net.query_deltas(
            ctx,
            batch.query[:, start : start + query_batch],
            batch.query_targets[:, start : start + query_batch],
            batch.query_values[:, start : start + query_batch],
        )[0]
        * ctx.std
        for start in range(0, batch.query.shape[1], query_batch)
    ]
    probs = torch.sigmoid(ctx.edge_logits[0])
    return probs * (1 - torch.eye(batch.num_nodes)), torch.cat(deltas)


def discover(
    cfg: DictConfig,
    checkpoint: str,
    threshold: float = 0.5,
    query_batch: int = 256,
    max_values_per_target: int = 10,
) -> dict[str, float]:
    """Predict the causal graph (and, with query.do, counterfactual changes) of `cfg.data.path`."""
    data = cfg.data
    regime_column = data.get("regime_column")
    net = load_pfn(checkpoint)
    text = [regime_column] if regime_column else []
    frame = load_table(data.path, text_columns=text, min_rows=MIN_ROWS)
    regime = frame.pop(regime_column) if regime_column else None
    _check_table(frame, regime, regime_column, net.max_nodes)
    columns = list(frame.columns)
    do = _parse_do(OmegaConf.select(cfg, "query.do", default=None), columns)
    true = load_graph(data.graph_path, columns) if data.get("graph_path") else None

    batch, query_rows = table_batch(frame, regime, do=do, max_values_per_target=max_values_per_target)
    probs, deltas = predict(net, batch, query_batch)
    calibration = read_calibration(checkpoint)
    if calibration is not None:
        probs = torch.tensor(calibration.probabilities(probs.numpy()), dtype=probs.dtype)
    pred = probs >= threshold

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(probs.numpy(), index=columns, columns=columns).to_csv(out / "adjacency.csv", index_label="parent")
    i, j = np.where(~np.eye(len(columns), dtype=bool))
    edges = pd.DataFrame(
        {"source": np.array(columns)[i], "target": np.array(columns)[j], "probability": probs.numpy()[i, j]}
    )
    edges["predicted"] = edges["probability"] >= threshold
    edges.sort_values("probability", ascending=False).to_csv(out / "edges.csv", index=False)
    plots.save_figure(plots.adjacency_figure(true, probs.numpy(), names=columns), out / "adjacency.png")
    metrics = {
        "discover/num_variables": float(len(columns)),
        "discover/num_regimes": float(batch.regime_mask.sum()),
        "discover/num_edges": float(pred.sum()),
    }
    if do is not None:
        frame_out = pd.DataFrame(deltas.numpy(), columns=columns)
        frame_out.insert(0, "row", query_rows.to_numpy() + 1)
        frame_out.to_csv(out / "deltas.csv", index=False)
    if true is not None:
        adj = torch.tensor(true, dtype=torch.float32)[None]
        mask = torch.ones(1, len(columns), dtype=torch.bool)
        scores, target = M.masked_edges(probs[None], adj, mask)
        metrics.update(
            {
                "discover/shd": float(M.shd(pred[None], adj, mask)[0]),
                "discover/auroc": float(binary_auroc(scores, target)),
                "discover/auprc": float(binary_average_precision(scores, target)),
                "discover/f1": float(binary_f1_score(scores, target, threshold=threshold)),
                "discover/cyclic": float(M.is_cyclic(pred[None], mask)[0]),
            }
        )
    log.info(
        "discover: %d variables, %d regimes, %d predicted edges; outputs in %s",
        len(columns),
        int(metrics["discover/num_regimes"]),
        int(metrics["discover/num_edges"]),
        out,
    )
    return metrics
