"""`task=discover`: run a trained causal PFN on a user's table.

    causal-engine task=discover data=table data.path=FILE.csv data.regime_column=COL \
        [data.graph_path=EDGES.csv] ['task.counterfactual={set_x3: {X3: 5.0}}'] [task.checkpoint=PATH]

The regime column names the intervened variable(s) of each row (`tables.regime_targets`: empty for
observational rows, several joined by '+'). Interventional rows are grouped into regimes by their targets, and
by the targets' values when those take at most `max_values_per_target` distinct values (several hard
interventions on one variable), else one regime per set of targets. The PFN standardises every variable with
its observational mean and std, so units do not matter.

Writes into the run directory: adjacency.csv (edge probabilities, row = parent, column = child), edges.csv
(every ordered pair with its probability, most likely first, `adjacent` = the probability of an edge in either
direction, `predicted`: the pair's `adjacent` >= threshold and this its more probable direction, see
`graphs.predicted_edges`),
adjacency.png; edge probabilities are calibrated when the checkpoint's json holds a calibration fitted for
its weights (`scripts/calibrate_pfn.py`); with data.graph_path, metrics against that graph; with
task.counterfactual (named intervention sets in the grammar of `causal_engine.interventions`, hard values or
shifts), deltas.csv: for every query and every observational row (`row`: its position in the table from 0, as in
task=query's counterfactual.csv), the predicted counterfactual change of every variable, in the variables'
units, and `do_sd`, how far the row's intervened values lie from their observational means in standard
deviations. A checkpoint whose json records the do-values its prior drew (`prior.intervention_z`, up to 3 sd
for the shipped one) adds `outside_training` (do_sd beyond that range: the deltas there are extrapolated, and
far less accurate) and a warning naming each query that has such rows. Every input problem is reported
before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_f1_score

from causal_engine import metrics as M
from causal_engine import plots
from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.calibration import TableCalibration, calibrated, read_calibration
from causal_engine.discovery.checkpoint import load_pfn, trained_do_range, warn_outside_training
from causal_engine.discovery.models import PFNNet
from causal_engine.errors import UserError
from causal_engine.graphs import describe_dependences, link_probabilities, predicted_edges, unexplained_dependences
from causal_engine.interventions import Intervention, parse_named_interventions
from causal_engine.tables import load_graph, load_table, regime_targets

log = logging.getLogger(__name__)
MIN_ROWS = 10
DELTA_LABELS = ("query", "row", "do_sd", "outside_training")  # deltas.csv's columns before the variables


class DiscoverError(UserError):
    """The table, regime column or query cannot be used; the message names the problem."""


def _set_points(values: np.ndarray, digits: int = 6) -> np.ndarray:
    """`values` rounded to `digits` significant digits (same shape): a simulator writes do(X = 3) as 3 give or
    take 1e-9, and such values are one set-point, not several regimes."""
    magnitude = np.floor(np.log10(np.abs(values), where=values != 0, out=np.zeros_like(values)))
    unit = 10.0 ** (magnitude - digits + 1)
    return np.round(values / unit) * unit


def _regimes(frame: pd.DataFrame, targets: np.ndarray, max_values: int) -> list[tuple[np.ndarray, list[int]]]:
    """(rows, target columns) of each interventional regime: rows grouped by their set of targets, then split
    by the targets' values when those take at most `max_values` distinct combinations (`_set_points`)."""
    x = frame.to_numpy()  # [N, d]
    by_targets: dict[tuple[int, ...], list[int]] = {}
    for row in np.flatnonzero(targets.any(1)):
        by_targets.setdefault(tuple(np.flatnonzero(targets[row]).tolist()), []).append(int(row))
    groups = []
    for columns, members in sorted(by_targets.items()):
        rows = np.asarray(members)
        combos, which = np.unique(_set_points(x[np.ix_(rows, columns)]), axis=0, return_inverse=True)
        if len(combos) <= max_values:
            groups += [(rows[which.ravel() == k], list(columns)) for k in range(len(combos))]
        else:
            groups.append((rows, list(columns)))
    return groups


def _query_values(x: torch.Tensor, spec: dict[int, Intervention], where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets [Q, d] bool, values [Q, d]) of one intervention set asked of every query row x [Q, d].

    A shift do(X := X + δ) asked of one row is the hard do(X := x_row + δ) of that row's counterfactual (X's
    own noise no longer matters once X is set), so it becomes a per-row hard value the PFN can take.
    """
    targets = torch.zeros_like(x, dtype=torch.bool)
    values = torch.zeros_like(x)
    for j, iv in spec.items():
        if not isinstance(iv.value, float) or iv.mask is not None:
            raise DiscoverError(
                f"{where}: task=discover takes a number or {{shift: number}} per variable (no tensors, "
                f"functions or masks); got {iv.value!r}"
            )
        targets[:, j] = True
        values[:, j] = x[:, j] + iv.value if iv.kind == "shift" else iv.value
    return targets, values


def table_batch(
    frame: pd.DataFrame,
    targets: np.ndarray | None,
    *,
    queries: Mapping[str, Mapping] | None = None,
    max_values_per_target: int = 10,
) -> tuple[DiscoveryBatch, pd.DataFrame]:
    """A one-graph DiscoveryBatch from a validated table, and the query name and table row of each query row.

    `targets` [N, d] bool marks each row's intervened variables (`tables.regime_targets`; None = every row is
    observational). `queries` is a named map of intervention sets in the grammar of
    `causal_engine.interventions`; each is asked of every observational row. Without queries there is one
    query row with no intervention (only the graph is wanted) and no label. A label's row is the table row's
    position from 0, as in `frame.iloc[row]` and in task=query's counterfactual.csv.
    """
    columns = list(frame.columns)
    d = len(columns)
    obs_rows = np.arange(len(frame)) if targets is None else np.flatnonzero(~targets.any(1))
    groups = [] if targets is None else _regimes(frame, targets, max_values_per_target)
    x = torch.tensor(np.ascontiguousarray(frame.to_numpy()), dtype=torch.float32)  # [N, d] (any row order)
    s_int = max((len(rows) for rows, _ in groups), default=1)
    inter = torch.zeros(1, len(groups), s_int, d)
    sample_mask = torch.zeros(1, len(groups), s_int, dtype=torch.bool)
    group_targets = torch.zeros(1, len(groups), d, dtype=torch.bool)
    group_values = torch.zeros(1, len(groups), d)
    for r, (rows, cols) in enumerate(groups):
        inter[0, r, : len(rows)] = x[rows]
        sample_mask[0, r, : len(rows)] = True
        group_targets[0, r, cols] = True
        group_values[0, r, cols] = x[rows][:, cols].mean(0)
    x_obs = x[obs_rows]  # [N_obs, d]
    parsed = parse_named_interventions(queries, columns, "task.counterfactual")
    query, query_targets, query_values = x_obs[:1], torch.zeros(1, d, dtype=torch.bool), torch.zeros(1, d)
    labels = pd.DataFrame({"query": pd.Series(dtype=str), "row": pd.Series(dtype=int)})
    if parsed:
        asked = [_query_values(x_obs, spec, f"task.counterfactual.{name}") for name, spec in parsed.items()]
        query = torch.cat([x_obs] * len(parsed))  # [Q, d], one block of observational rows per query
        query_targets = torch.cat([t for t, _ in asked])
        query_values = torch.cat([v for _, v in asked])
        labels = pd.DataFrame({"query": np.repeat(list(parsed), len(obs_rows)), "row": np.tile(obs_rows, len(parsed))})
    batch = DiscoveryBatch(
        observational=x_obs[None],
        interventional=inter,
        int_sample_mask=sample_mask,
        regime_targets=group_targets,
        regime_values=group_values,
        regime_mask=torch.ones(1, len(groups), dtype=torch.bool),
        query=query[None],
        query_targets=query_targets[None],
        query_values=query_values[None],
        node_mask=torch.ones(1, d, dtype=torch.bool),
    )
    return batch, labels


def _check_table(frame: pd.DataFrame, targets: np.ndarray | None, max_nodes: int) -> pd.DataFrame:
    """Refuse a table with too few or too many variables, too few observational rows or a constant column;
    return its observational rows."""
    columns = list(frame.columns)
    if len(columns) < 2:
        raise DiscoverError(f"data.path: the table has {len(columns)} numeric variable(s); discovery needs at least 2.")
    if len(columns) > max_nodes:
        raise DiscoverError(
            f"data.path: the table has {len(columns)} variables; this checkpoint supports at most "
            f"{max_nodes}. Select fewer columns or train a model with a larger net.max_nodes."
        )
    obs = frame if targets is None else frame[~targets.any(1)]
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
    return obs


DETERMINISTIC_RANK_CORR = 0.999  # |Spearman| from which two columns count as functions of each other


def warn_deterministic_pairs(obs: pd.DataFrame) -> list[tuple[str, str, float]]:
    """Warn about, and return, the pairs of columns that are (almost) strictly monotone functions of each other in
    the observational rows `obs`, |Spearman| >= DETERMINISTIC_RANK_CORR, with that correlation: a copy, a unit
    change, a derived column.

    Between such columns, and for their neighbours, the rows cannot say which of the two a third variable depends
    on (the graph is not identifiable there; faithfulness fails), so their edges are not to be trusted. Ranks
    make it invariant to the monotone transforms the PFN ignores."""
    rho = obs.rank().corr().to_numpy()  # [d, d] Spearman
    i, j = np.where(np.triu(np.abs(rho) >= DETERMINISTIC_RANK_CORR, 1))
    pairs = [(str(obs.columns[a]), str(obs.columns[b]), float(rho[a, b])) for a, b in zip(i, j, strict=True)]
    if pairs:
        shown = ", ".join(f"{a}~{b} ({r:+.4f})" for a, b, r in pairs[:10])
        log.warning(
            "data.path: %d column pair(s) are monotone functions of each other in the observational rows "
            "(|Spearman| >= %s): %s%s. Which of the two a third variable depends on is not identifiable, so edges "
            "at these columns are unreliable; drop one of each pair if it is a copy, a unit change or derived.",
            len(pairs),
            DETERMINISTIC_RANK_CORR,
            shown,
            " ..." if len(pairs) > 10 else "",
        )
    return pairs


DISCRETE_MAX_VALUES = 10  # a column with at most this many distinct observational values counts as discrete


def warn_discrete_columns(obs: pd.DataFrame) -> dict[str, int]:
    """Warn about, and return with their number of distinct values, the columns of the observational rows `obs`
    with at most DISCRETE_MAX_VALUES values (binary flags, grades, short counts).

    Their ties take their mid-rank, so the answer does not depend on the rows' order, but the shipped PFN was
    trained on continuous variables only: its edges at such columns are less reliable (docs/pfn.md, "Discrete
    columns", measures how much)."""
    counts = obs.nunique()
    discrete = {str(c): int(n) for c, n in counts.items() if n <= DISCRETE_MAX_VALUES}
    if discrete:
        log.warning(
            "data.path: %d column(s) take at most %d values: %s. The PFN was trained on continuous variables, so "
            "its edges at these columns are less reliable (docs/pfn.md, Discrete columns); give the graph "
            "(data.graph_path=EDGES.csv) if you know it.",
            len(discrete),
            DISCRETE_MAX_VALUES,
            ", ".join(f"{c} ({n} values)" for c, n in discrete.items()),
        )
    return discrete


@torch.no_grad()
def predict(
    net: PFNNet, batch: DiscoveryBatch, query_batch: int = 256, calibration: TableCalibration | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge probabilities [d, d] of one table's batch, mapped through `calibration` when one is given (the
    checkpoint's, `read_calibration`), and deltas in the variables' units [Q, d].

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
    probs = torch.sigmoid(ctx.edge_logits)  # [1, d, d]
    return torch.tensor(calibrated(probs, batch, calibration)[0], dtype=probs.dtype), torch.cat(deltas)


def do_distance(batch: DiscoveryBatch) -> torch.Tensor:
    """[B, Q] for each query row, the largest |value - mean| / sd over its intervened variables, with each
    variable's observational mean and sd: how far outside the data the question reaches (0 without one)."""
    obs = batch.observational  # [B, S, d]
    mean, sd = obs.mean(1, keepdim=True), obs.std(1, keepdim=True).clamp_min(1e-12)  # [B, 1, d]
    distance = (batch.query_values - mean).abs() / sd  # [B, Q, d]
    return (distance * (batch.query_targets & batch.node_mask[:, None])).amax(-1)


def warn_extrapolated(labels: pd.DataFrame, limit: float, checkpoint: str) -> dict[str, float]:
    """Flag the query rows whose do-values lie beyond `limit` sd (`labels` has query and do_sd; adds
    outside_training), warn naming each query with such rows, and return each query's share of them."""
    labels["outside_training"] = labels["do_sd"] > limit
    share = labels.groupby("query", sort=False)["outside_training"].mean()
    flagged = [f"{q} ({100 * s:.0f} % of rows, up to {labels.do_sd[labels['query'] == q].max():.1f} sd)"
               for q, s in share.items() if s > 0]  # fmt: skip
    if flagged:
        log.warning(
            "task.counterfactual: %s set a variable further than %g sd from its observational mean, beyond "
            "every do-value task.checkpoint=%s was trained on (its json's prior.intervention_z); those rows' "
            "deltas are extrapolated and far less accurate (outside_training in deltas.csv)",
            ", ".join(flagged), limit, checkpoint,
        )  # fmt: skip
    return {f"discover/{q}/outside_training": float(s) for q, s in share.items()}


def discover(
    cfg: DictConfig,
    checkpoint: str,
    threshold: float = 0.5,
    query_batch: int = 256,
    max_values_per_target: int = 10,
    counterfactual: Mapping | None = None,
) -> dict[str, float]:
    """Predict the causal graph of `cfg.data.path` (and, with `counterfactual`, every observational row's
    change under each named intervention set)."""
    data = cfg.data
    regime_column = data.get("regime_column")
    net = load_pfn(checkpoint)
    text = [regime_column] if regime_column else []
    frame = load_table(data.path, text_columns=text, min_rows=MIN_ROWS)
    regime = frame.pop(regime_column) if regime_column else None
    columns = list(frame.columns)
    targets = regime_targets(regime, columns, regime_column) if regime is not None else None  # [N, d]
    obs = _check_table(frame, targets, net.max_nodes)
    warn_outside_training(checkpoint, len(columns))
    warn_deterministic_pairs(obs)
    discrete = warn_discrete_columns(obs)
    if isinstance(counterfactual, DictConfig):
        counterfactual = OmegaConf.to_container(counterfactual, resolve=True)
    clash = sorted(set(columns) & set(DELTA_LABELS)) if counterfactual else []
    if clash:
        raise DiscoverError(
            f"data.path: column(s) {clash} would collide with deltas.csv's own columns {list(DELTA_LABELS)}; "
            "rename them in the table."
        )
    true = load_graph(data.graph_path, columns) if data.get("graph_path") else None

    batch, labels = table_batch(frame, targets, queries=counterfactual, max_values_per_target=max_values_per_target)
    probs, deltas = predict(net, batch, query_batch, read_calibration(checkpoint))
    pred = predicted_edges(probs, threshold)  # [d, d] bool

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(probs.numpy(), index=columns, columns=columns).to_csv(out / "adjacency.csv", index_label="parent")
    i, j = np.where(~np.eye(len(columns), dtype=bool))
    edges = pd.DataFrame(
        {"source": np.array(columns)[i], "target": np.array(columns)[j], "probability": probs.numpy()[i, j]}
    )
    edges["adjacent"] = link_probabilities(probs).numpy()[i, j]
    edges["predicted"] = pred.numpy()[i, j]
    edges.sort_values("probability", ascending=False).to_csv(out / "edges.csv", index=False)
    plots.save_figure(plots.adjacency_figure(true, probs.numpy(), names=columns), out / "adjacency.png")
    missed = unexplained_dependences(obs, pred.numpy())
    if missed:
        log.warning(
            "discover: the predicted graph (pairs whose probability of an edge either way, edges.csv's `adjacent`, "
            "is >= task.threshold=%g) makes %d pair(s) of variables independent that the observational rows show "
            "dependent (Spearman, Bonferroni at 0.01): %s. It is missing edges; edges.csv still ranks every pair, "
            "and a lower task.threshold adds edges.",
            threshold, len(missed), describe_dependences(missed),
        )  # fmt: skip
    metrics = {
        "discover/num_variables": float(len(columns)),
        "discover/num_regimes": float(batch.regime_mask.sum()),
        "discover/num_edges": float(pred.sum()),
        "discover/unexplained_dependences": float(len(missed)),
        "discover/discrete_columns": float(len(discrete)),
    }
    if counterfactual:
        labels["do_sd"] = do_distance(batch)[0].numpy()
        limit = trained_do_range(checkpoint)
        if limit is not None:
            metrics.update(warn_extrapolated(labels, limit, checkpoint))
        pd.concat([labels, pd.DataFrame(deltas.numpy(), columns=columns)], axis=1).to_csv(
            out / "deltas.csv", index=False
        )
    if true is not None:
        adj = torch.tensor(true, dtype=torch.float32)[None]
        mask = torch.ones(1, len(columns), dtype=torch.bool)
        scores, target = M.masked_edges(probs[None], adj, mask)
        metrics.update(
            {
                "discover/shd": float(M.shd(pred[None], adj, mask)[0]),
                "discover/auroc": float(binary_auroc(scores, target)),
                "discover/auprc": float(binary_average_precision(scores, target)),
                "discover/f1": float(binary_f1_score(M.masked_edges(pred[None].float(), adj, mask)[0], target)),
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
