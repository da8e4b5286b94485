"""`graphs.predicted_edges`: a pair is an edge when its link probability reaches the threshold, in its more probable
direction."""

import torch

from causal_engine.graphs import link_probabilities, predicted_edges


def test_a_link_with_an_open_direction_is_an_edge_in_its_likelier_direction():
    probs = torch.tensor(
        [
            [0.0, 0.45, 0.30, 0.10],
            [0.35, 0.0, 0.05, 0.0],
            [0.30, 0.05, 0.0, 0.0],
            [0.20, 0.0, 0.0, 0.0],
        ]
    )
    pred = predicted_edges(probs, 0.5)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 1] = True  # 0.45 + 0.35 = 0.8: linked, 0 -> 1 the likelier direction (each alone is below 0.5)
    expected[0, 2] = True  # 0.30 + 0.30 = 0.6, an exact tie: the lower index is the parent
    # 0 - 3: 0.3 < 0.5, no edge; 1 - 2: 0.1, no edge
    assert torch.equal(pred, expected)
    assert not predicted_edges(probs, 0.85).any()
    assert torch.equal(predicted_edges(probs, 0.55), expected)


def test_batched_and_padding_nodes_get_no_edge():
    probs = torch.zeros(2, 3, 3)
    probs[0, 0, 1] = 0.9
    probs[1, 2, 0] = 0.6
    probs[1, 0, 2] = 0.1
    pred = predicted_edges(probs)
    assert pred.sum() == 2 and pred[0, 0, 1] and pred[1, 2, 0]
    assert not predicted_edges(torch.zeros(5, 5)).any()  # a zero row and column, and the diagonal, never


def test_link_probabilities_are_the_symmetric_sum_capped_at_one():
    probs = torch.tensor([[0.0, 0.45, 0.9], [0.35, 0.0, 0.1], [0.3, 0.0, 0.0]])
    link = link_probabilities(probs)
    assert torch.allclose(link, link.T) and torch.allclose(link[0, 1], torch.tensor(0.8))
    assert link[0, 2] == 1.0 and torch.allclose(link[1, 2], torch.tensor(0.1))
