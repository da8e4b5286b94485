"""Baselines: CPDAG conversion, recovery on an easy linear chain, and the delta baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causal_engine.discovery import baselines as B
from causal_engine.discovery.loss import delta_mask
from causal_engine.discovery.module import true_delta_z

from .conftest import small_batch


def chain(n: int = 500, seed: int = 0) -> B.GraphData:
    """X0 -> X1 -> X2 (strong linear Gaussian), with do(X0 = 2) and do(X1 = -2) regimes."""
    rng = np.random.default_rng(seed)

    def sim(m: int, do: dict[int, float]) -> np.ndarray:
        x0 = np.full(m, do[0]) if 0 in do else rng.normal(size=m)
        x1 = np.full(m, do[1]) if 1 in do else 1.5 * x0 + rng.normal(size=m)
        x2 = -1.5 * x1 + rng.normal(size=m)
        return np.stack([x0, x1, x2], 1)

    adjacency = np.zeros((3, 3))
    adjacency[0, 1] = adjacency[1, 2] = 1
    return B.GraphData(sim(n, {}), [([0], sim(n, {0: 2.0})), ([1], sim(n, {1: -2.0}))], adjacency)


def test_cpdag_conversion_reads_causal_learn_marks() -> None:
    g = np.zeros((3, 3))
    g[0, 1], g[1, 0] = -1, 1  # 0 -> 1
    g[1, 2] = g[2, 1] = -1  # 1 - 2
    expected = np.zeros((3, 3), dtype=bool)
    expected[0, 1] = expected[1, 2] = expected[2, 1] = True
    assert (B._cpdag_to_edges(g) == expected).all()


@pytest.mark.parametrize("name", ["PC", "GES", "GIES", "NOTEARS", "abs-corr"])
def test_structure_methods_find_the_chain_skeleton(name: str) -> None:
    g = chain()
    scores, pred = B.EDGE_METHODS[name](g)
    assert scores.shape == pred.shape == (3, 3)
    skeleton = pred | pred.T
    assert skeleton[0, 1] and skeleton[1, 2]
    if name == "GIES":  # the interventions orient the chain
        assert pred[0, 1] and pred[1, 2] and not pred[1, 0]


def test_empty_graph_scores() -> None:
    scores, pred = B.empty(chain())
    assert not pred.any() and (scores == 0).all()


def test_split_graphs_drops_padding() -> None:
    batch = small_batch(sizes=(4, 6))
    graphs = B.split_graphs(batch)
    assert [g.observational.shape[1] for g in graphs] == [4, 4, 6, 6]
    assert all(len(g.regimes) == int(batch.regime_mask[i].sum()) for i, g in enumerate(graphs))


def test_delta_baselines() -> None:
    batch = small_batch(sizes=(5, 7))
    truth, mask = true_delta_z(batch), delta_mask(batch)
    zero = B.zero_delta(batch)
    assert (zero[mask] == 0).all()
    torch.testing.assert_close(zero[batch.query_targets], truth[batch.query_targets], atol=1e-4, rtol=1e-4)
    shift = B.mean_shift_delta(batch)
    # Every query targets an intervened node at a training value: its regime's mean shift is used, which
    # explains the counterfactual change better than predicting none.
    assert ((shift - truth)[mask] ** 2).mean() < ((zero - truth)[mask] ** 2).mean()
