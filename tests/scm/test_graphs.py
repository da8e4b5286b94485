"""Random DAGs: acyclic, parents before children, the promised density, index-free labels, heavy SF tails."""

from __future__ import annotations

import math

import pytest
import torch

from causal_engine.graphs import topological_order
from causal_engine.scm import sample_dags, sample_dags_and_order


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_parents_precede_children(adjacency: torch.Tensor, order: torch.Tensor) -> None:
    position = order.argsort(-1)  # [B, d] node -> position
    graph, parent, child = adjacency.nonzero(as_tuple=True)
    assert (position[graph, parent] < position[graph, child]).all()
    assert torch.equal(order.sort(-1).values, torch.arange(order.shape[1]).expand_as(order))  # a permutation


@pytest.mark.parametrize("graph", ["er", "sf"])
def test_parents_precede_children_in_the_returned_order(graph: str) -> None:
    adjacency, order = sample_dags_and_order(64, 12, graph=graph, expected_parents=3.0, generator=gen(0))
    assert adjacency.shape == (64, 12, 12) and adjacency.dtype == torch.float32
    assert set(adjacency.unique().tolist()) <= {0.0, 1.0}
    assert adjacency.sum() > 0
    assert_parents_precede_children(adjacency, order)
    assert_parents_precede_children(adjacency, topological_order(adjacency))


def test_er_expected_parents_matches_within_binomial_sd() -> None:
    batch, d, parents = 200, 20, 2.0
    adjacency = sample_dags(batch, d, expected_parents=parents, generator=gen(1))
    pairs = batch * d * (d - 1) // 2
    prob = 2 * parents / (d - 1)
    sd_of_mean = math.sqrt(pairs * prob * (1 - prob)) / (batch * d)  # edges ~ Binomial(pairs, prob)
    mean_parents = adjacency.sum().item() / (batch * d)
    assert abs(mean_parents - parents) < 4 * sd_of_mean


def test_er_edge_prob_matches_within_binomial_sd() -> None:
    batch, d, prob = 300, 10, 0.3
    adjacency = sample_dags(batch, d, edge_prob=prob, generator=gen(2))
    pairs = batch * d * (d - 1) // 2
    density = adjacency.sum().item() / pairs
    assert abs(density - prob) < 4 * math.sqrt(prob * (1 - prob) / pairs)


def test_node_index_carries_no_order_information() -> None:
    """Without the per-graph relabelling every edge would point from a lower to a higher index."""
    adjacency = sample_dags(200, 10, expected_parents=2.0, generator=gen(3))
    upper = adjacency.triu(1).sum().item()
    edges = adjacency.sum().item()
    assert abs(upper - edges / 2) < 4 * math.sqrt(edges) / 2  # Binomial(edges, 1/2)


def test_scale_free_in_degree_is_exact_and_degree_is_heavy_tailed() -> None:
    adjacency, order = sample_dags_and_order(50, 100, graph="sf", expected_parents=2.0, generator=gen(4))
    in_degree_by_position = adjacency.sum(1).gather(1, order)  # [B, d]
    expected = torch.tensor([0.0, 1.0] + [2.0] * 98).expand(50, 100)  # min(2, position) parents each
    assert torch.equal(in_degree_by_position, expected)
    er = sample_dags(50, 100, graph="er", expected_parents=2.0, generator=gen(4))

    def mean_max_degree(adj: torch.Tensor) -> float:
        return (adj.sum(1) + adj.sum(2)).max(1).values.mean().item()

    assert mean_max_degree(adjacency) > 1.8 * mean_max_degree(er)  # hubs: ~22 vs ~10 at d = 100


def test_scale_free_fractional_parents_have_the_right_mean() -> None:
    adjacency, order = sample_dags_and_order(400, 10, graph="sf", expected_parents=1.5, generator=gen(5))
    late = adjacency.sum(1).gather(1, order)[:, 2:]  # positions >= 2 ask for 1 or 2 parents, mean 1.5
    assert set(late.unique().tolist()) == {1.0, 2.0}
    n = late.numel()
    assert abs(late.mean().item() - 1.5) < 4 * 0.5 / math.sqrt(n)  # Bernoulli(1/2) + 1


def test_expected_parents_is_capped_at_the_complete_dag() -> None:
    adjacency = sample_dags(3, 4, expected_parents=10.0, generator=gen(6))
    assert adjacency.sum((1, 2)).tolist() == [6.0, 6.0, 6.0]


def test_same_seed_same_graphs_different_seed_different_graphs() -> None:
    for graph in ("er", "sf"):
        first = sample_dags(8, 15, graph=graph, generator=gen(7))
        assert torch.equal(first, sample_dags(8, 15, graph=graph, generator=gen(7)))
        assert not torch.equal(first, sample_dags(8, 15, graph=graph, generator=gen(8)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graph": "ba"}, "graph must be one of"),
        ({"edge_prob": 1.5}, "edge_prob must lie in"),
        ({"expected_parents": None}, "give either expected_parents"),
        ({"expected_parents": -1.0}, "expected_parents must be"),
    ],
)
def test_bad_graph_options_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_dags(2, 5, generator=gen(0), **kwargs)


def test_bad_sizes_and_generator_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_nodes must be a positive integer"):
        sample_dags(2, 0, generator=gen(0))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sample_dags(2, 3, generator=0)  # type: ignore[arg-type]
