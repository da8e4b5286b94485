"""External generators (sempler, cdt, gcastle) as GraphData: shapes, a DAG for truth, interventions where they
exist, and no side effects on the caller's logging or random streams."""

from __future__ import annotations

import numpy as np
import pytest

from causal_engine.discovery.external import (
    DISCRETE_LEVELS,
    FAMILIES,
    INTERVENTIONAL,
    discretised,
    external_table,
    monotone_copies,
    real_table,
    sorted_rows,
    standardise_table,
)
from causal_engine.errors import UserError
from causal_engine.graphs import topological_order

pytest.importorskip("sempler")
pytest.importorskip("cdt")
pytest.importorskip("castle")


def is_dag(adjacency: np.ndarray) -> bool:
    import torch

    try:
        topological_order(torch.tensor(adjacency)[None])
    except ValueError:
        return False
    return True


def all_rows(g) -> np.ndarray:
    return np.concatenate([g.observational, *(x for _, x in g.regimes)])


@pytest.mark.parametrize("family", FAMILIES)
def test_tables_have_the_asked_shape_and_a_dag_for_truth(family: str) -> None:
    g = external_table(family, d=7, rows=60, seed=3)
    assert g.observational.shape == (60, 7)
    assert g.adjacency.shape == (7, 7) and set(np.unique(g.adjacency)) <= {0.0, 1.0}
    assert g.adjacency.sum() > 0 and np.trace(g.adjacency) == 0
    assert is_dag(g.adjacency)
    assert np.isfinite(g.observational).all() and g.regimes == []


@pytest.mark.parametrize("family", FAMILIES)
def test_tables_are_reproducible_from_their_seed(family: str) -> None:
    interventions = 2 if family in INTERVENTIONAL else 0
    a, b = (external_table(family, d=6, rows=40, seed=11, interventions=interventions) for _ in range(2))
    assert np.array_equal(all_rows(a), all_rows(b)) and np.array_equal(a.adjacency, b.adjacency)
    c = external_table(family, d=6, rows=40, seed=12, interventions=interventions)
    assert not np.array_equal(a.observational, c.observational)


@pytest.mark.parametrize("family", INTERVENTIONAL)
def test_interventions_set_their_target_and_mark_it(family: str) -> None:
    g = external_table(family, d=8, rows=200, seed=5, interventions=3)
    assert len(g.regimes) == 3
    targets = [t for t, _ in g.regimes]
    assert all(len(t) == 1 for t in targets) and len({t[0] for t in targets}) == 3
    obs_std = g.observational.std(0)
    for (target,), x in g.regimes:
        assert x.shape == (100, 8)
        # do(target ~ N(m, 0.1²)) with m 2-4 observational SDs away: the target barely moves and sits far out.
        assert x[:, target].std() < 0.2
        shift = abs(x[:, target].mean() - g.observational[:, target].mean()) / obs_std[target]
        assert 1.5 < shift < 4.5
        # Non-descendants keep their observational distribution: a root that is not the target stays centred.
        roots = [j for j in range(8) if g.adjacency[:, j].sum() == 0 and j != target]
        for j in roots:
            assert abs(x[:, j].mean() - g.observational[:, j].mean()) < 5 * obs_std[j] / np.sqrt(100)


def test_the_measured_sachs_table_comes_from_the_package_with_its_consensus_graph() -> None:
    g = real_table("sachs")
    assert g.observational.shape == (7466, 11) and not g.regimes
    assert np.isfinite(g.observational).all() and (g.observational > 0).all()  # raw intensities
    assert g.adjacency.sum() == 18 and not np.diag(g.adjacency).any()
    assert not is_dag(g.adjacency)  # its one feedback loop, plcg -> PIP2 -> PIP3 -> plcg
    with pytest.raises(UserError, match=r"real data set 'dream4' is unknown; available: \['sachs'\]"):
        real_table("dream4")


def test_a_gcastle_table_leaves_the_root_logger_and_the_global_random_streams_as_it_found_them() -> None:
    import logging
    import random

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    g = external_table("gcastle-gp-add", d=6, rows=40, seed=0)
    assert (random.random(), np.random.rand()) == expected
    assert root.handlers == handlers and root.level == level
    assert g.adjacency.sum() > 0


def test_a_family_without_interventions_refuses_them() -> None:
    with pytest.raises(UserError, match="no interventions"):
        external_table("cdt-linear", d=5, rows=30, seed=0, interventions=2)
    with pytest.raises(UserError, match="unknown"):
        external_table("sempler-quadratic", d=5, rows=30, seed=0)


def test_standardised_and_monotone_copies_keep_the_graph_and_the_order_of_every_column() -> None:
    g = external_table("sempler-anm", d=6, rows=80, seed=2, interventions=2)
    s = standardise_table(g)
    assert np.allclose(s.observational.mean(0), 0) and np.allclose(s.observational.std(0), 1)
    copies = monotone_copies(g)
    assert set(copies) == {"raw", "log", "rank"}
    before = all_rows(g)
    for copy in [s, *copies.values()]:
        assert np.array_equal(copy.adjacency, g.adjacency)
        assert [t for t, _ in copy.regimes] == [t for t, _ in g.regimes]
        after = all_rows(copy)
        assert after.shape == before.shape
        # strictly increasing in every column over all rows: each column orders the rows the same way
        for j in range(6):
            assert np.array_equal(np.argsort(before[:, j], kind="stable"), np.argsort(after[:, j], kind="stable"))


def test_discretised_copies_cut_a_share_of_columns_into_few_ordered_levels_in_every_regime() -> None:
    g = external_table("sempler-anm", d=10, rows=200, seed=3, interventions=2)
    copy = discretised(g, seed=0)
    before, after = all_rows(g), all_rows(copy)
    cut = [j for j in range(10) if not np.array_equal(before[:, j], after[:, j])]
    assert len(cut) == 4 and np.array_equal(copy.adjacency, g.adjacency)  # 40 % of the columns
    for j in cut:
        levels = np.unique(copy.observational[:, j])
        assert len(levels) in DISCRETE_LEVELS and np.array_equal(levels, np.arange(len(levels)))
        # the same cuts in every regime: the levels never reverse the order of the values
        order = np.argsort(before[:, j], kind="stable")
        assert (np.diff(after[order, j]) >= 0).all()
    assert np.array_equal(discretised(g, seed=0).observational, copy.observational)  # reproducible
    rows = sorted_rows(copy, cut[0])
    assert (np.diff(rows.observational[:, cut[0]]) >= 0).all() and rows.regimes is copy.regimes
