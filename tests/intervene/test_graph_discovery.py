"""task=query without a graph: the PFN's graph, refined and made a DAG (data.graph_path=discover)."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from causal_engine.errors import UserError
from causal_engine.graphs import unexplained_dependences
from causal_engine.intervene.graph_discovery import GraphDiscovery, explain_dependences
from causal_engine.intervene.zoo import get_scm
from causal_engine.run import run


def _table(tmp_path: Path, columns: int = 3, rows: int = 120) -> Path:
    x = get_scm("mediator_nonlin").sample(rows, torch.Generator().manual_seed(0)).numpy()
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    for k in range(3, columns):
        frame[f"z{k}"] = np.random.default_rng(k).normal(size=rows)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def _query(compose, data: Path, graph: str | None = "discover"):
    return compose(
        [
            "task=query",
            "data=table",
            f"data.path={data}",
            *([f"data.graph_path={graph}"] if graph else []),
            "trainer=debug",
            "task.bootstrap=0",
            "task.discovery.steps=5",
            "task.interventional={raise_a: {a: 1.0}}",
            "task.counterfactual={a_up: {a: {shift: 1.0}}}",
        ]
    )


def test_query_without_a_graph_discovers_one_writes_it_and_says_so(compose, tmp_path, caplog):
    cfg = _query(compose, _table(tmp_path))
    with caplog.at_level(logging.INFO, logger="causal_engine.intervene.query"):
        metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    used = pd.read_csv(out / "graph_used.csv")
    assert list(used.columns) == ["source", "target", "pfn_probability", "refined_probability", "added_for"]
    assert set(used.source) | set(used.target) <= {"a", "b", "c"}
    above = used.added_for == "threshold"
    assert (used.refined_probability[above] > 0.5).all() and (used.refined_probability[~above] <= 0.5).all()
    assert metrics["graph/unexplained_dependences"] == 0  # a -> b -> c, a -> c: every pair is dependent
    assert "discovered by the causal PFN" in caplog.text and "graph_used.csv" in caplog.text
    do = pd.read_csv(out / "interventional.csv")
    assert do[do.variable == "a"]["mean"].item() == 1.0 and metrics["query/raise_a/a"] == 1.0
    assert (out / "counterfactual.csv").exists()


def test_query_without_graph_path_offers_discover(compose, tmp_path):
    with pytest.raises(UserError, match="data.graph_path=discover"):
        run(_query(compose, _table(tmp_path), graph=None))


def test_discover_refuses_a_table_wider_than_the_checkpoint(compose, tmp_path):
    # the shipped checkpoint's max_nodes is read from it, whatever it is
    from causal_engine.discovery.checkpoint import load_pfn

    cfg = _query(compose, _table(tmp_path))
    width = load_pfn(cfg.task.discovery.checkpoint).max_nodes + 1
    cfg = _query(compose, _table(tmp_path, columns=width, rows=12))
    with pytest.raises(UserError, match=f"has {width} variables.*max_nodes={width - 1}"):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "graph_used.csv").exists()


def test_explain_dependences_adds_the_most_probable_acyclic_edges_until_the_table_is_explained() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    b = a + 0.5 * rng.normal(size=300)
    frame = pd.DataFrame({"a": a, "b": b, "c": b + 0.5 * rng.normal(size=300), "z": rng.normal(size=300)})
    probs = np.full((4, 4), 0.1)
    probs[1, 0], probs[0, 1] = 0.4, 0.3  # b -> a is the more probable direction
    probs[1, 2] = 0.35
    probs[3, 0] = 0.2  # z is independent of everything: its edges must not be added for a dependence
    out = explain_dependences(frame, probs, np.zeros((4, 4)))
    assert {(int(i), int(j)) for i, j in zip(*np.nonzero(out), strict=True)} == {(1, 0), (1, 2)}
    assert unexplained_dependences(frame, out) == []
    # Given a -> b, the more probable b -> a would close a cycle and is skipped; b -> c explains the rest.
    given = np.zeros((4, 4))
    given[0, 1] = 1.0
    out = explain_dependences(frame, probs, given)
    assert {(int(i), int(j)) for i, j in zip(*np.nonzero(out), strict=True)} == {(0, 1), (1, 2)}
    # A graph that already explains the table is kept as it is.
    assert (explain_dependences(frame, probs, out) == out).all()


def test_discovery_names_discrete_columns(caplog) -> None:
    x = get_scm("mediator_nonlin").sample(120, torch.Generator().manual_seed(0)).numpy()
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(flag=(x[:, 0] > 0).astype(float))
    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "pfn.pt"
    with caplog.at_level(logging.WARNING):
        GraphDiscovery(str(shipped), steps=2)(frame)
    assert "flag (2 values)" in caplog.text and "continuous" in caplog.text
