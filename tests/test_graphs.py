"""Graph utilities: orders put parents first, closures are exact, NOTEARS is zero exactly on DAGs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causal_engine.graphs import (
    descendants,
    greedy_dag,
    notears,
    reachability,
    reachable,
    structural_intervention_distance,
    topological_generations,
    topological_order,
)
from causal_engine.scm import sample_dags_and_order


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


DIAMOND = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float32)  # 0->{1,2}->3


def test_topological_order_of_a_known_graph_and_cycle_error() -> None:
    adjacency = torch.zeros(1, 3, 3)
    adjacency[0, 2, 0] = adjacency[0, 0, 1] = 1.0  # 2 -> 0 -> 1
    assert topological_order(adjacency).tolist() == [[2, 0, 1]]
    adjacency[0, 1, 2] = 1.0  # closes the cycle
    with pytest.raises(ValueError, match=r"not acyclic: graph\(s\) \[0\]"):
        topological_order(adjacency)


def test_descendants_is_the_transitive_closure() -> None:
    adjacency = torch.zeros(1, 5, 5)
    for i, j in [(0, 1), (1, 2), (2, 3)]:  # chain 0 -> 1 -> 2 -> 3, node 4 isolated
        adjacency[0, i, j] = 1.0
    reach = descendants(adjacency)[0]
    expected = torch.zeros(5, 5, dtype=torch.bool)
    for i in range(4):
        expected[i, i + 1 : 4] = True
    assert torch.equal(reach, expected)


def test_descendants_of_one_graph_accept_numpy_and_bool() -> None:
    expected = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(descendants(DIAMOND.numpy()), expected)
    assert torch.equal(descendants(DIAMOND.bool()), expected)
    assert torch.equal(reachability(DIAMOND), expected | torch.eye(4, dtype=torch.bool))


def test_a_node_on_a_cycle_is_its_own_descendant() -> None:
    cycle = torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert descendants(cycle).diagonal().tolist() == [True, True, True]


def test_topological_generations_group_nodes_by_depth_and_name_a_cycle() -> None:
    assert topological_generations(DIAMOND) == [[0], [1, 2], [3]]
    assert topological_generations(np.zeros((2, 2))) == [[0, 1]]
    cyclic = DIAMOND.clone()
    cyclic[3, 0] = 1
    with pytest.raises(ValueError, match=r"cycle through nodes \[0, 1, 2, 3\]"):
        topological_generations(cyclic)


def test_notears_is_zero_on_a_dag_and_exact_on_a_two_cycle() -> None:
    """W = [[0, a], [b, 0]]: W∘W has eigenvalues ±ab, so h = tr(exp(W∘W)) - 2 = 2 cosh(ab) - 2."""
    a, b = 0.5, 0.8
    dags = torch.stack([DIAMOND.double() * 0.7, torch.zeros(4, 4, dtype=torch.float64)])
    assert notears(dags).abs().max().item() < 1e-12
    two_cycle = torch.tensor([[0.0, a], [b, 0.0]], dtype=torch.float64)
    assert notears(two_cycle).item() == pytest.approx(2 * math.cosh(a * b) - 2, rel=1e-12)


def test_reachable_from_sources_agrees_with_the_closure() -> None:
    adjacency, order = sample_dags_and_order(16, 12, expected_parents=1.5, generator=gen(9))
    sources = torch.nn.functional.one_hot(torch.randint(12, (16, 3), generator=gen(10)), 12).bool()  # [B, Q, d]
    closure = descendants(adjacency)  # [B, d, d]
    expected = sources | (sources.float() @ closure.float() > 0)
    assert torch.equal(reachable(adjacency, order, sources), expected)


def test_greedy_dag_keeps_the_most_probable_edges_and_skips_cycle_closers():
    probs = np.zeros((3, 3))
    probs[0, 1], probs[1, 0], probs[1, 2], probs[2, 0], probs[0, 2] = 0.9, 0.8, 0.7, 0.6, 0.4
    # 0->1 kept; 1->0 closes 0->1->0; 1->2 kept; 2->0 closes 0->1->2->0; 0->2 is below the threshold
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 2] = 1.0
    assert (greedy_dag(probs, 0.5) == expected).all()


def test_sid_counts_wrong_adjustments_exactly_on_a_chain():
    # truth 0 -> 1 -> 2. Predicting nothing gets every causal pair's effect wrong: (0,1), (0,2), (1,2) are
    # non-zero effects the empty graph calls zero; the reverse pairs are zero in both: 3 of 6 ordered pairs.
    true = np.zeros((3, 3))
    true[0, 1] = true[1, 2] = 1
    assert structural_intervention_distance(true, np.zeros((3, 3))) == 0.5
    assert structural_intervention_distance(true, true) == 0.0
    # a CPDAG: the collider 0 -> 2 <- 1 oriented, the edge 3 - 4 undirected (truth 3 -> 4); it scores, and
    # better than guessing no edges
    collider = np.zeros((5, 5))
    collider[0, 2] = collider[1, 2] = collider[3, 4] = 1
    cpdag = collider.copy()
    cpdag[4, 3] = 1
    distance = structural_intervention_distance(collider, cpdag, cpdag=True)
    assert 0.0 <= distance < structural_intervention_distance(collider, np.zeros((5, 5)))


def test_sid_breaks_a_predicted_cycle_at_its_weakest_edge():
    true = np.zeros((3, 3))
    true[0, 1] = true[1, 2] = 1
    cyclic = true.copy()
    cyclic[2, 0] = 1
    score = np.full((3, 3), 0.9)
    score[2, 0] = 0.6  # the cycle closer is the weakest edge: dropping it leaves the true chain
    assert structural_intervention_distance(true, cyclic, score) == 0.0
    both = true + true.T  # each pair both ways: as a DAG answer the weaker direction goes, as a CPDAG it stays
    score[1, 0] = score[2, 1] = 0.1
    assert structural_intervention_distance(true, both, score) == 0.0
    assert structural_intervention_distance(true, both, cpdag=True) > 0.0
