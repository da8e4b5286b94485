"""Simulation, hard interventions and counterfactuals of batched SCMs."""

from __future__ import annotations

import pytest
import torch

import causal_engine.scm.model as scm_model
from causal_engine.graphs import descendants
from causal_engine.scm import (
    MECHANISMS,
    NO_EDGE,
    NODE_CLAMP,
    SCM,
    apply_mechanisms,
    build_scm,
    counterfactual,
    sample_noise,
    sample_scm,
    simulate,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_simulate(
    scm: SCM, noise: torch.Tensor, targets: torch.Tensor | None = None, values: torch.Tensor | None = None
) -> torch.Tensor:
    """The structural equations written out node by node (slow, obviously right)."""
    x = torch.zeros_like(noise)
    for b in range(scm.num_graphs):
        for j in scm.order[b].tolist():
            parents = scm.adjacency[b, :, j].nonzero().flatten().tolist()
            value = noise[b, :, j].clone()
            if parents:
                for i in parents:
                    value = value + apply_mechanisms(scm.mechanisms[b, i, j], x[b, :, i])
                value = value.clamp(-NODE_CLAMP, NODE_CLAMP)
            if targets is not None and values is not None:
                value = torch.where(targets[b, :, j], values[b, :, j], value)
            x[b, :, j] = value
    return x


@pytest.fixture
def scm() -> SCM:
    return sample_scm(6, 9, expected_parents=2.5, generator=gen(0))


def test_simulate_matches_the_structural_equations(scm: SCM) -> None:
    noise = sample_noise(scm, 40, generator=gen(1), dtype=torch.float64)
    targets = torch.rand(6, 40, 9, generator=gen(2)) < 0.2
    values = torch.randn(6, 40, 9, generator=gen(3), dtype=torch.float64) * 5
    torch.testing.assert_close(simulate(scm, noise), reference_simulate(scm, noise), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        simulate(scm, noise, targets, values),
        reference_simulate(scm, noise, targets, values),
        rtol=1e-10,
        atol=1e-10,
    )


def test_roots_equal_their_noise_and_children_stay_within_the_clamp() -> None:
    scm = sample_scm(4, 30, edge_prob=0.5, generator=gen(4))  # dense: many values hit the clamp
    noise = sample_noise(scm, 50, generator=gen(5)) * 30
    x = simulate(scm, noise)
    roots = scm.adjacency.sum(1) == 0  # [B, d]
    assert torch.equal(x.transpose(1, 2)[roots], noise.transpose(1, 2)[roots])
    assert x.transpose(1, 2)[~roots].abs().max() <= NODE_CLAMP
    assert (x.abs() == NODE_CLAMP).any()


def test_intervened_nodes_equal_their_values(scm: SCM) -> None:
    noise = sample_noise(scm, 30, generator=gen(6))
    targets = torch.zeros(6, 30, 9, dtype=torch.bool)
    targets[:, :10, 3] = True  # one node on the first ten samples
    targets[:, 10:20, [1, 4, 7]] = True  # three nodes at once on the next ten
    values = torch.linspace(-7, 7, 6 * 30 * 9).reshape(6, 30, 9)
    x = simulate(scm, noise, targets, values)
    assert torch.equal(x[targets], values[targets])


def test_broadcast_intervention_equals_the_expanded_one(scm: SCM) -> None:
    noise = sample_noise(scm, 25, generator=gen(7))
    targets = torch.zeros(6, 1, 9, dtype=torch.bool)
    targets[:, 0, 2] = True
    values = torch.full((6, 1, 9), 8.0)
    expanded = simulate(scm, noise, targets.expand(6, 25, 9).clone(), values.expand(6, 25, 9).clone())
    assert torch.equal(simulate(scm, noise, targets, values), expanded)


def test_counterfactual_without_intervention_reproduces_the_sample_exactly(scm: SCM) -> None:
    noise = sample_noise(scm, 50, generator=gen(8))
    factual = simulate(scm, noise)
    nothing = torch.zeros(6, 50, 9, dtype=torch.bool)
    assert torch.equal(counterfactual(scm, noise, nothing, torch.zeros(6, 50, 9)), factual)
    assert torch.equal(simulate(scm, noise.clone()), factual)  # the input noise is not modified either
    assert torch.equal(noise, sample_noise(scm, 50, generator=gen(8)))


def test_counterfactual_changes_descendants_only() -> None:
    """do(x_t = v) with the same noise: non-descendants bitwise unchanged, every descendant moves.

    tanh edges are strictly monotone and never saturate the node clamp here, so each path to a descendant carries
    the change (float64 so that long paths stay above rounding).
    """
    scm = sample_scm(16, 8, expected_parents=2.0, mechanisms=("tanh",), generator=gen(9))
    noise = sample_noise(scm, 20, generator=gen(10), dtype=torch.float64)
    factual = simulate(scm, noise)
    target = torch.randint(8, (16,), generator=gen(11))
    targets = torch.nn.functional.one_hot(target, 8).bool()[:, None, :]  # [B, 1, d]
    values = torch.full((16, 1, 8), 9.0, dtype=torch.float64)
    delta = counterfactual(scm, noise, targets, values) - factual  # [B, S, d]
    reach = descendants(scm.adjacency)[torch.arange(16), target]  # [B, d] descendants of the target
    changed = delta != 0
    non_descendant = ~reach & ~targets[:, 0]
    assert reach.sum() > 10  # the test has descendants to look at
    assert not changed.transpose(1, 2)[non_descendant].any()
    assert changed.transpose(1, 2)[reach].all()


def test_linear_counterfactual_delta_is_the_total_effect() -> None:
    """In a linear SCM (±2 x edges, no clamp reached) the change of node j is (v - x_t) · [(I - W)^-1]_tj."""
    scm = sample_scm(8, 6, expected_parents=1.5, mechanisms=("linear", "negative_linear"), generator=gen(12))
    noise = sample_noise(scm, 10, generator=gen(13), dtype=torch.float64) * 0.01
    weights = torch.where(scm.mechanisms == 0, 2.0, -2.0).double() * scm.adjacency.double()  # [B, d, d]
    total_effect = torch.linalg.inv(torch.eye(6, dtype=torch.float64) - weights)  # [B, d, d]
    targets = torch.zeros(8, 1, 6, dtype=torch.bool)
    targets[:, 0, 0] = True
    values = torch.full((8, 1, 6), 0.02, dtype=torch.float64)
    factual = simulate(scm, noise)
    delta = counterfactual(scm, noise, targets, values) - factual
    expected = (0.02 - factual[:, :, :1]) * total_effect[:, None, 0, :]  # [B, S, d]
    torch.testing.assert_close(delta, expected, rtol=1e-9, atol=1e-12)


def test_same_seed_same_data_different_seed_different_data() -> None:
    def draw(seed: int) -> tuple[SCM, torch.Tensor]:
        g = gen(seed)
        scm = sample_scm(4, 10, graph="sf", generator=g)
        return scm, simulate(scm, sample_noise(scm, 30, generator=g))

    (scm_a, x_a), (scm_b, x_b), (_, x_c) = draw(14), draw(14), draw(15)
    assert torch.equal(scm_a.adjacency, scm_b.adjacency) and torch.equal(scm_a.mechanisms, scm_b.mechanisms)
    assert torch.equal(x_a, x_b)
    assert not torch.equal(x_a, x_c)


def test_sampled_mechanisms_are_ground_truth_on_edges_only() -> None:
    scm = sample_scm(200, 10, expected_parents=3.0, generator=gen(16))
    edge = scm.adjacency.bool()
    assert (scm.mechanisms[~edge] == NO_EDGE).all()
    counts = torch.bincount(scm.mechanisms[edge], minlength=len(MECHANISMS)).double()
    # uniform over the ten kinds: each count ~ Binomial(E, 1/10)
    sd = (edge.sum() * 0.1 * 0.9).sqrt()
    assert ((counts - counts.mean()).abs() < 4 * sd).all()
    assert scm.noise_scale.shape == (200, 10) and (scm.noise_scale == 1.0).all()


def test_no_nan_or_inf_in_dense_large_graphs() -> None:
    for d in (50, 100):
        scm = sample_scm(2, d, edge_prob=0.3, generator=gen(d))
        noise = sample_noise(scm, 20, generator=gen(d + 1)) * 3
        targets = torch.rand(2, 20, d, generator=gen(d + 2)) < 0.1
        assert torch.isfinite(simulate(scm, noise, targets, torch.full((2, 20, d), 10.0))).all()


def test_build_scm_validates_a_known_graph() -> None:
    adjacency = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    mechanisms = torch.tensor([[[NO_EDGE, 2], [NO_EDGE, NO_EDGE]]])
    scm = build_scm(adjacency, mechanisms, noise_scale=torch.tensor([0.5, 2.0]))
    assert scm.order.tolist() == [[0, 1]] and scm.noise_scale.tolist() == [[0.5, 2.0]]
    x = simulate(scm, torch.tensor([[[1.0, 0.5]]]))
    torch.testing.assert_close(x, torch.tensor([[[1.0, 0.5 + torch.sin(torch.tensor(1.0)).item()]]]))
    with pytest.raises(ValueError, match="not acyclic"):
        build_scm(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.tensor([[[NO_EDGE, 0], [0, NO_EDGE]]]))
    with pytest.raises(ValueError, match="NO_EDGE"):
        build_scm(adjacency, torch.tensor([[[NO_EDGE, 2], [3, NO_EDGE]]]))
    with pytest.raises(ValueError, match="every edge needs a mechanism"):
        build_scm(adjacency, torch.tensor([[[NO_EDGE, NO_EDGE], [NO_EDGE, NO_EDGE]]]))


def test_bad_simulate_inputs_are_clear_errors(scm: SCM) -> None:
    noise = sample_noise(scm, 5, generator=gen(17))
    with pytest.raises(ValueError, match=r"noise must have shape \[B, S, d\]"):
        simulate(scm, noise[:, :, :4])
    with pytest.raises(ValueError, match="targets and values together"):
        simulate(scm, noise, torch.zeros(6, 5, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="targets must be a bool tensor"):
        simulate(scm, noise, torch.zeros(6, 5, 9), torch.zeros(6, 5, 9))
    with pytest.raises(ValueError, match="must broadcast to noise"):
        simulate(scm, noise, torch.zeros(6, 5, 3, dtype=torch.bool), torch.zeros(6, 5, 3))
    with pytest.raises(ValueError, match="finite"):
        simulate(scm, noise, torch.ones(6, 1, 9, dtype=torch.bool), torch.full((6, 1, 9), float("nan")))


def test_graph_blocks_give_the_same_result(monkeypatch: pytest.MonkeyPatch, scm: SCM) -> None:
    """Large batches are simulated a few graphs at a time (cache-sized blocks); blocking must not change x."""
    noise = sample_noise(scm, 30, generator=gen(18))
    targets = torch.rand(6, 30, 9, generator=gen(19)) < 0.2
    values = torch.randn(6, 30, 9, generator=gen(20))
    whole = simulate(scm, noise, targets, values)
    monkeypatch.setattr(scm_model, "BLOCK_BYTES", 9 * 30 * 4 * 4)  # 4 graphs per block: blocks of 4 and 2
    assert torch.equal(simulate(scm, noise, targets, values), whole)
    monkeypatch.setattr(scm_model, "BLOCK_BYTES", 1)  # one graph per block
    assert torch.equal(simulate(scm, noise, targets, values), whole)
