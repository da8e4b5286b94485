"""task=discover end to end on a small CSV, and every bad-input case stops with a clear message."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import causal_engine.discovery.discover as discover_module
from causal_engine.discovery.checkpoint import load_pfn
from causal_engine.discovery.discover import (
    DiscoverError,
    predict,
    table_batch,
    warn_deterministic_pairs,
    warn_discrete_columns,
)
from causal_engine.discovery.models import ModelD
from causal_engine.errors import UserError
from causal_engine.tables import regime_targets


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = ModelD(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=6)
    path = tmp_path / "pfn.pt"
    torch.save({"net_spec": net.net_spec(), "state_dict": net.state_dict()}, path)
    return path


def chain_table(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    """X1 -> X2 -> X3 with 40 observational rows and 10 rows each of do(X1=3) and do(X2=-2)."""
    rng = np.random.default_rng(seed)

    def simulate(n: int, do: dict[str, float]) -> pd.DataFrame:
        x1 = np.full(n, do["X1"]) if "X1" in do else rng.normal(size=n)
        x2 = np.full(n, do["X2"]) if "X2" in do else 2 * x1 + rng.normal(size=n)
        x3 = -x2 + rng.normal(size=n)
        return pd.DataFrame({"X1": x1, "X2": x2, "X3": x3 * 100})

    parts = [
        simulate(rows, {}).assign(regime=""),
        simulate(10, {"X1": 3.0}).assign(regime="X1"),
        simulate(10, {"X2": -2.0}).assign(regime="X2"),
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[pd.DataFrame | str, str], Path]:
    def _write(table: pd.DataFrame | str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        if isinstance(table, str):
            path.write_text(table)
        else:
            table.to_csv(path, index=False)
        return path

    return _write


def overrides(data: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        "task=discover",
        "data=table",
        f"data.path={data}",
        "data.regime_column=regime",
        f"task.checkpoint={checkpoint}",
        *extra,
    ]


def test_discover_writes_graph_edges_heatmap_metrics_and_deltas(run_experiment, compose, write, checkpoint) -> None:
    data = write(chain_table())
    graph = write("source,target\nX1,X2\nX2,X3\n", "edges.csv")
    queries = "+task.counterfactual={set_x1: {X1: 5.0}, nudge_x2: {X2: {shift: 0.5}}}"
    metrics = run_experiment(overrides(data, checkpoint, f"data.graph_path={graph}", queries))
    out = Path(compose([]).paths.output_dir)
    adjacency = pd.read_csv(out / "adjacency.csv", index_col="parent")
    assert list(adjacency.columns) == ["X1", "X2", "X3"] and list(adjacency.index) == ["X1", "X2", "X3"]
    assert np.allclose(np.diag(adjacency.to_numpy()), 0) and ((adjacency >= 0) & (adjacency <= 1)).all().all()
    edges = pd.read_csv(out / "edges.csv")
    assert len(edges) == 6 and edges["probability"].is_monotonic_decreasing
    both = edges.set_index(["source", "target"])["probability"]
    either = [min(both[(a, b)] + both[(b, a)], 1.0) for a, b in zip(edges.source, edges.target, strict=True)]
    assert np.allclose(edges["adjacent"], either, atol=1e-6) and (edges["adjacent"] >= edges["probability"]).all()
    assert (out / "adjacency.png").stat().st_size > 0
    deltas = pd.read_csv(out / "deltas.csv")
    assert len(deltas) == 80 and list(deltas.columns) == ["query", "row", "do_sd", "X1", "X2", "X3"]
    assert deltas["query"].tolist() == ["set_x1"] * 40 + ["nudge_x2"] * 40
    assert deltas["row"].tolist() == list(range(40)) * 2
    table = chain_table()
    set_x1, nudge_x2 = deltas.iloc[:40], deltas.iloc[40:]
    assert np.allclose(set_x1["X1"], 5.0 - table["X1"][:40], atol=1e-3)  # the intervened variable: exact
    assert np.allclose(nudge_x2["X2"], 0.5, atol=1e-3)  # a shift moves its variable by exactly the shift
    assert metrics["discover/num_regimes"] == 2 and metrics["discover/num_variables"] == 3
    assert {"discover/shd", "discover/auroc", "discover/f1"} <= set(metrics)
    assert 0 <= metrics["discover/shd"] <= 3


def test_do_values_beyond_the_checkpoints_trained_range_are_flagged_and_warned(
    run_experiment, compose, write, checkpoint, caplog
) -> None:
    table = chain_table()
    obs = table[table["regime"] == ""]
    mean, sd = obs["X1"].mean(), obs["X1"].std()
    checkpoint.with_suffix(".json").write_text(json.dumps({"prior": {"intervention_z": [1.0, 3.0]}}))
    queries = f"+task.counterfactual={{near: {{X1: {mean + 2 * sd}}}, far: {{X1: {mean - 5 * sd}}}}}"
    with caplog.at_level(logging.WARNING):
        metrics = run_experiment(overrides(write(table), checkpoint, queries))
    deltas = pd.read_csv(Path(compose([]).paths.output_dir) / "deltas.csv")
    assert list(deltas.columns[:4]) == ["query", "row", "do_sd", "outside_training"]
    near, far = deltas[deltas["query"] == "near"], deltas[deltas["query"] == "far"]
    np.testing.assert_allclose(near["do_sd"], 2.0, rtol=1e-4)
    np.testing.assert_allclose(far["do_sd"], 5.0, rtol=1e-4)
    assert not near["outside_training"].any() and far["outside_training"].all()
    assert metrics["discover/near/outside_training"] == 0.0 and metrics["discover/far/outside_training"] == 1.0
    warned = [r.getMessage() for r in caplog.records if "extrapolated" in r.getMessage()]
    assert len(warned) == 1 and "far (100 % of rows, up to 5.0 sd)" in warned[0] and "near" not in warned[0]


def test_a_predicted_graph_too_sparse_for_the_tables_dependences_is_named_with_the_fix(
    run_experiment, write, checkpoint, caplog, monkeypatch
) -> None:
    # An empty predicted graph (a threshold no pair reaches): the chain's three dependent pairs are unexplained.
    empty = lambda probs, threshold: torch.zeros_like(probs, dtype=torch.bool)  # noqa: E731
    monkeypatch.setattr(discover_module, "predicted_edges", empty)
    with caplog.at_level(logging.WARNING):
        metrics = run_experiment(overrides(write(chain_table()), checkpoint))
    assert metrics["discover/num_edges"] == 0 and metrics["discover/unexplained_dependences"] == 3
    warned = [r.getMessage() for r in caplog.records if "show dependent" in r.getMessage()]
    assert len(warned) == 1 and all(p in warned[0] for p in ("X1~X2", "X2~X3", "X1~X3", "lower task.threshold"))


def test_a_column_named_like_a_deltas_label_is_refused(run_experiment, write, checkpoint) -> None:
    table = chain_table().rename(columns={"X3": "row"})
    with pytest.raises(DiscoverError, match=r"\['row'\] would collide with deltas.csv"):
        run_experiment(overrides(write(table), checkpoint, "+task.counterfactual={q: {X1: 1.0}}"))


def test_delta_rows_are_the_tables_row_positions_from_zero() -> None:
    # Interventional rows first, so a row's label differs from its place among the observational rows.
    table = chain_table().iloc[::-1].reset_index(drop=True)
    regime = table.pop("regime")
    batch, labels = table_batch(table, regime_targets(regime, list(table.columns)), queries={"q": {"X1": 1.0}})
    assert labels["row"].tolist() == list(range(20, 60))  # as task=query's counterfactual.csv numbers them
    np.testing.assert_array_equal(batch.query[0].numpy(), table.iloc[labels["row"]].to_numpy(dtype=np.float32))


def test_regimes_split_by_target_and_value() -> None:
    table = chain_table()
    table.loc[45:49, "X1"] = 7.0  # do(X1=3) for 5 rows, do(X1=7) for 5 rows
    targets = regime_targets(table.pop("regime"), list(table.columns))
    batch, labels = table_batch(table, targets, queries={"set_x3": {"X3": 1.0}})
    assert batch.interventional.shape[:2] == (1, 3)
    assert batch.regime_values[0, :, 0].tolist() == [3.0, 7.0, 0.0]
    assert batch.int_sample_mask[0].sum(1).tolist() == [5, 5, 10]
    assert batch.query.shape == (1, 40, 3) and batch.query_targets[0, :, 2].all()
    assert labels["row"].tolist() == list(range(40))  # queries are the observational rows (positions from 0)


def test_a_set_point_written_with_float_noise_is_one_regime() -> None:
    table = chain_table()
    table.loc[40:49, "X1"] = (
        3.0 + np.array([0, 1, -1, 2, -2, 0, 1, -1, 2, -2]) * 1e-12
    )  # do(X1=3) as simulators write it
    table.loc[45:49, "X1"] += 4.0  # and do(X1=7)
    targets = regime_targets(table.pop("regime"), list(table.columns))
    batch, _ = table_batch(table, targets)
    assert batch.regime_values[0, :, 0].tolist() == pytest.approx([3.0, 7.0, 0.0])
    assert batch.int_sample_mask[0].sum(1).tolist() == [5, 5, 10]


def test_a_multi_target_row_is_one_regime_on_every_named_variable() -> None:
    table = chain_table()
    table.loc[40:49, "regime"] = "X1+X3"  # do(X1=3, X3=row's value): one regime with two targets
    table.loc[40:49, "X3"] = 4.0
    targets = regime_targets(table.pop("regime"), list(table.columns))
    batch, _ = table_batch(table, targets)
    assert batch.regime_targets[0].tolist() == [[True, False, True], [False, True, False]]
    assert batch.regime_values[0, 0].tolist() == [3.0, 0.0, 4.0]


def test_rescaling_a_column_leaves_the_discovered_graph_unchanged(checkpoint) -> None:
    net = load_pfn(checkpoint)
    table = chain_table()
    regime = table.pop("regime")
    scaled = table.assign(X2=table["X2"] * 1e3 + 5)
    with torch.no_grad():
        targets = regime_targets(regime, list(table.columns))
        a = net(table_batch(table, targets)[0]).edge_probs
        b = net(table_batch(scaled, targets)[0]).edge_probs
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_row_order_of_a_table_with_discrete_columns_does_not_change_its_graph() -> None:
    """Tied values (a binary treatment, counts) share their mid-rank, so a file sorted by one column gives the
    graph and the deltas of the shuffled file; breaking ties by row order made up dependences on sorted files."""
    net = load_pfn(Path(__file__).resolve().parents[2] / "checkpoints" / "pfn.pt")
    rng = np.random.default_rng(0)
    t, z = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    y = 1.5 * t + rng.normal(size=300)
    table = pd.DataFrame({"t": t, "count": rng.poisson(2, 300), "z": z, "y": y, "w": y + rng.normal(size=300)})
    table = table.astype(float)
    queries = {"treat": {"t": 1.0}}
    shuffled = table.sample(frac=1, random_state=1)
    with torch.no_grad():
        runs = [predict(net, table_batch(f, None, queries=queries)[0]) for f in (shuffled, table.sort_values("y"))]
    (probs, deltas), (sorted_probs, sorted_deltas) = runs
    torch.testing.assert_close(sorted_probs, probs, atol=1e-4, rtol=0)  # float summation order only
    order = np.argsort(table.sort_values("y").index.to_numpy())  # shuffled's rows in the sorted table's order
    by_row = sorted_deltas[torch.as_tensor(order[shuffled.index.to_numpy()])]
    torch.testing.assert_close(by_row, deltas, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("edit", "extra", "message"),
    [
        ("missing_file", [], "file not found"),
        ("missing_column", [], "no column"),
        ("non_numeric", [], "X2"),
        ("nan", [], "X3"),
        ("few_rows", [], "at least 10"),
        ("constant", [], "constant"),
        ("too_many", [], "at most 6"),
        ("unknown_regime", [], "X9"),
        ("ok", ["+task.counterfactual={q: {X7: 1.0}}"], "'X7', which is not a variable"),
        ("ok", ["+task.counterfactual={q: {X1: {shift: 1, value: 2}}}"], "exactly one of 'value' or 'shift'"),
        ("ok", ["+task.counterfactual={q: {X1: high}}"], "task.counterfactual.q.X1 must be a finite number"),
        ("ok", ["task.checkpoint=/nonexistent/pfn.pt"], "no checkpoint"),
    ],
)
def test_bad_input_stops_with_a_clear_message(run_experiment, compose, write, checkpoint, edit, extra, message):
    table = chain_table()
    path = None
    if edit == "missing_file":
        path = Path("/nonexistent/data.csv")
    elif edit == "missing_column":
        table = table.drop(columns="regime")
    elif edit == "non_numeric":
        table["X2"] = table["X2"].astype(object)
        table.loc[3, "X2"] = "abc"
    elif edit == "nan":
        table.loc[5, "X3"] = np.nan
    elif edit == "few_rows":
        table = table.iloc[:9]
    elif edit == "constant":
        table["X3"] = 1.0
    elif edit == "too_many":
        for k in range(4, 8):
            table[f"X{k}"] = np.random.default_rng(k).normal(size=len(table))
    elif edit == "unknown_regime":
        table.loc[50, "regime"] = "X9"
    data = path or write(table)
    with pytest.raises(UserError, match=message):
        run_experiment(overrides(data, checkpoint, *extra))
    assert not (Path(compose([]).paths.output_dir) / "adjacency.csv").exists()  # no partial outputs


def test_discover_without_regime_column_uses_every_row_as_observational(run_experiment, compose, write, checkpoint):
    table = chain_table().iloc[:40].drop(columns="regime")
    metrics = run_experiment(
        [
            "task=discover",
            "data=table",
            f"data.path={write(table)}",
            f"task.checkpoint={checkpoint}",
            "+task.counterfactual={zero_x2: {X2: 0.0}}",
        ]
    )
    assert metrics["discover/num_regimes"] == 0
    deltas = pd.read_csv(Path(compose([]).paths.output_dir) / "deltas.csv")
    assert len(deltas) == 40 and np.allclose(deltas["X2"], -table["X2"], atol=1e-3)


def test_the_shipped_checkpoint_loads_and_predicts() -> None:
    net = load_pfn(Path(__file__).resolve().parents[2] / "checkpoints" / "pfn.pt")
    table = chain_table()
    regime = table.pop("regime")
    with torch.no_grad():
        out = net(table_batch(table, regime_targets(regime, list(table.columns)), queries={"q": {"X1": 1.0}})[0])
    assert out.edge_logits.shape == (1, 3, 3) and torch.isfinite(out.delta).all()


def test_columns_that_are_functions_of_each_other_are_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    table = chain_table(rows=200).iloc[:200].drop(columns="regime")
    assert warn_deterministic_pairs(table) == [] and not caplog.text  # a noisy chain is not deterministic
    table["X1_cubed"] = -(table["X1"] ** 3)  # a derived column: monotone, decreasing
    with caplog.at_level("WARNING"):
        pairs = warn_deterministic_pairs(table)
    assert pairs == [("X1", "X1_cubed", -1.0)]
    assert "X1~X1_cubed (-1.0000)" in caplog.text and "not identifiable" in caplog.text


def test_discrete_columns_are_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    table = chain_table(rows=200).iloc[:200].drop(columns="regime")
    assert warn_discrete_columns(table) == {} and not caplog.text
    table["flag"] = (table["X1"] > 0).astype(float)
    table["count"] = np.round((table["X2"] - table["X2"].min()) / table["X2"].std())  # a handful of integers
    with caplog.at_level("WARNING"):
        discrete = warn_discrete_columns(table)
    assert discrete == {"flag": 2, "count": table["count"].nunique()} and discrete["count"] <= 10
    assert "flag (2 values)" in caplog.text and "continuous" in caplog.text


def test_a_query_that_changes_nothing_in_a_row_gives_that_row_zero_deltas() -> None:
    """Consistency: do(t = 1) for a row whose t is already 1 is the factual world (every delta 0); the rows it
    does change get the model's deltas."""
    net = load_pfn(Path(__file__).resolve().parents[2] / "checkpoints" / "pfn.pt")
    rng = np.random.default_rng(2)
    a = rng.normal(size=200)
    t = (a + rng.normal(size=200) > 0).astype(float)
    y = 2 * t + a + rng.normal(size=200)
    table = pd.DataFrame({"a": a, "t": t, "y": y, "w": y + a + rng.normal(size=200)})
    with torch.no_grad():
        _, deltas = predict(net, table_batch(table, None, queries={"treat": {"t": 1.0}})[0])
    treated = torch.as_tensor(t == 1)
    assert (deltas[treated] == 0).all()
    assert (deltas[~treated, 1] == 1).all() and deltas[~treated, 2].abs().mean() > 0.1
