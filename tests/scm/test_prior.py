"""The PFN prior batch: shapes, regimes, and counterfactual deltas consistent with the SCM."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import causal_engine.scm.model as scm_model
from causal_engine.graphs import descendants
from causal_engine.scm import PriorBatch, apply_mechanisms, build_scm, sample_batch, simulate


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_follow_the_seed_configuration() -> None:
    batch, d = 3, 7
    prior = sample_batch(batch, d, num_obs=20, num_int_per_regime=11, num_queries=4, generator=gen(0))
    regimes = math.ceil(d / 2) * 3  # half the nodes, three values each
    expected = {
        "adjacency": ((batch, d, d), torch.float32),
        "mechanisms": ((batch, d, d), torch.long),
        "observational": ((batch, 20, d), torch.float32),
        "interventional": ((batch, regimes, 11, d), torch.float32),
        "regime_targets": ((batch, regimes, d), torch.bool),
        "regime_values": ((batch, regimes, d), torch.float32),
        "regime_mask": ((batch, regimes), torch.bool),
        "query": ((batch, 4, d), torch.float32),
        "query_targets": ((batch, 4, d), torch.bool),
        "query_values": ((batch, 4, d), torch.float32),
        "delta": ((batch, 4, d), torch.float32),
    }
    got = {f.name: getattr(prior, f.name) for f in dataclasses.fields(PriorBatch)}
    assert {name: (tuple(t.shape), t.dtype) for name, t in got.items()} == expected
    assert all(t.is_contiguous() for t in got.values())
    assert prior.regime_mask.all()


def test_observational_only_has_zero_regimes() -> None:
    prior = sample_batch(2, 5, intervention_fraction=0.0, num_obs=8, num_queries=3, generator=gen(1))
    assert prior.interventional.shape == (2, 0, 100, 5)
    assert prior.regime_targets.shape == (2, 0, 5) and prior.regime_mask.shape == (2, 0)
    assert prior.query_targets.sum(-1).eq(1).all()  # queries still ask about one (any) node
    empty = sample_batch(2, 5, num_queries=0, num_obs=8, num_int_per_regime=2, generator=gen(1))
    assert empty.query.shape == (2, 0, 5) and empty.delta.shape == (2, 0, 5)


@pytest.mark.parametrize(("fraction", "d", "targets"), [(0.5, 20, 10), (0.5, 7, 4), (0.3, 10, 3), (1.0, 4, 4)])
def test_number_of_intervened_nodes_is_ceil_fraction_d(fraction: float, d: int, targets: int) -> None:
    prior = sample_batch(2, d, intervention_fraction=fraction, num_obs=5, num_int_per_regime=2, generator=gen(2))
    assert prior.regime_targets.shape[1] == targets * 3
    assert (prior.regime_targets.any(1).sum(-1) == targets).all()  # distinct nodes


def test_regimes_are_target_major_with_every_value_and_force_their_node() -> None:
    values = (5.0, -8.0, 10.0)
    prior = sample_batch(4, 8, intervention_values=values, num_obs=5, num_int_per_regime=9, generator=gen(3))
    assert prior.regime_targets.sum(-1).eq(1).all()  # one node per regime
    node = prior.regime_targets.float().argmax(-1)  # [B, R]
    assert torch.equal(node[:, 0::3], node[:, 1::3]) and torch.equal(node[:, 0::3], node[:, 2::3])
    assert prior.regime_values.sum(-1).tolist() == [list(values) * 4] * 4
    assert torch.equal(prior.regime_values == 0, ~prior.regime_targets)
    forced = prior.interventional.transpose(2, 3)[prior.regime_targets]  # [B * R, S_int] the target's column
    assert torch.equal(forced, prior.regime_values[prior.regime_targets][:, None].expand(-1, 9))


def test_query_delta_is_the_counterfactual_of_the_same_unit() -> None:
    """delta is exactly 0 off the target's descendants, value - x on the target, and the target is intervened."""
    prior = sample_batch(8, 10, num_queries=5, num_obs=5, num_int_per_regime=3, generator=gen(4))
    assert prior.query_targets.sum(-1).eq(1).all()
    intervened = prior.regime_targets.any(1)  # [B, d]
    assert (prior.query_targets & ~intervened[:, None, :]).sum() == 0  # queries ask about regime targets
    assert set(prior.query_values[prior.query_targets].tolist()) <= {5.0, 8.0, 10.0}
    target = prior.query_targets.float().argmax(-1)  # [B, Q]
    reach = descendants(prior.adjacency)  # [B, d, d]
    reach_q = reach.gather(1, target[..., None].expand(-1, -1, 10))  # [B, Q, d]
    unaffected = ~reach_q & ~prior.query_targets
    assert (prior.delta[unaffected] == 0).all()
    torch.testing.assert_close(
        prior.delta[prior.query_targets], prior.query_values[prior.query_targets] - prior.query[prior.query_targets]
    )
    # most descendants move; not all, since values 5-10 saturate the exp/quadratic/cubic clips and the ±20 clamp
    assert (prior.delta[reach_q] != 0).float().mean() > 0.5


def abduct(prior: PriorBatch, x: torch.Tensor) -> torch.Tensor:
    """Noise [B, S, d] that reproduces rows x [B, S, d] of the batch's SCMs (exact while no node sits on ±20)."""
    parent_terms = apply_mechanisms(prior.mechanisms[:, None], x[..., :, None]).sum(-2)  # [B, S, d]
    has_parents = prior.adjacency.sum(1).bool()[:, None, :]
    return x - torch.where(has_parents, parent_terms, torch.zeros_like(x))


def test_delta_matches_resimulation_of_a_clamp_free_query() -> None:
    """Rebuild the SCM from the batch's ground truth and recover the delta from the factual row by abduction."""
    prior = sample_batch(6, 6, expected_parents=1.0, num_queries=3, num_obs=5, num_int_per_regime=2, generator=gen(5))
    scm = build_scm(prior.adjacency, prior.mechanisms)
    x = prior.query.double()  # [B, Q, d]
    clamp_free = (x.abs() < 20).all(-1)  # [B, Q]
    cf = simulate(scm, abduct(prior, x), prior.query_targets, prior.query_values.double())
    torch.testing.assert_close((cf - x)[clamp_free], prior.delta.double()[clamp_free], rtol=1e-4, atol=1e-4)
    assert clamp_free.float().mean() > 0.5


def test_interventional_rows_follow_the_mutilated_scm() -> None:
    """Without noise every row is a function of the SCM and its intervention: each regime's rows must equal the
    structural equations under that regime's do(), descendants included."""
    prior = sample_batch(4, 8, noise_scale=0.0, num_obs=3, num_int_per_regime=2, num_queries=2, generator=gen(9))
    scm = build_scm(prior.adjacency, prior.mechanisms, noise_scale=0.0)
    batch, regimes, _, d = prior.interventional.shape
    zeros = torch.zeros(batch, regimes, d)
    expected = simulate(scm, zeros, prior.regime_targets, prior.regime_values)  # [B, R, d] one row per regime
    # float32 to the ulp: vectorised and scalar tails of sin/exp/... may differ in the last bit across row lengths
    close = {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(prior.interventional, expected[:, :, None, :].expand_as(prior.interventional), **close)
    torch.testing.assert_close(prior.observational, simulate(scm, torch.zeros(batch, 3, d)), **close)
    cf = simulate(scm, torch.zeros(batch, 2, d), prior.query_targets, prior.query_values)
    torch.testing.assert_close(prior.delta, cf - prior.query, **close)
    assert (prior.interventional != prior.observational[:, :1, None, :]).any(-1).all()  # every regime moves x


def test_same_seed_same_batch_different_seed_different_batch() -> None:
    def draw(seed: int) -> PriorBatch:
        return sample_batch(3, 6, graph="sf", num_obs=10, num_int_per_regime=4, num_queries=2, generator=gen(seed))

    a, b, c = draw(6), draw(6), draw(7)
    for f in dataclasses.fields(PriorBatch):
        assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name
    assert not torch.equal(a.observational, c.observational)
    assert not torch.equal(a.adjacency, c.adjacency)


@pytest.mark.parametrize("d", [50, 100])
def test_no_nan_or_inf_at_large_d(d: int) -> None:
    for kwargs in ({"expected_parents": 2.0}, {"edge_prob": 0.3}):
        prior = sample_batch(2, d, num_obs=10, num_int_per_regime=2, num_queries=4, generator=gen(d), **kwargs)
        for f in dataclasses.fields(PriorBatch):
            value = getattr(prior, f.name)
            if value.is_floating_point():
                assert torch.isfinite(value).all(), f.name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"intervention_fraction": 1.5}, "intervention_fraction must lie in"),
        ({"intervention_values": ()}, "intervention_values must be a non-empty"),
        ({"intervention_values": (1.0, float("inf"))}, "intervention_values must be a non-empty"),
        ({"num_obs": 0}, "num_obs must be a positive integer"),
        ({"num_queries": -1}, "num_queries must be an integer"),
        ({"mechanisms": ("linear", "relu")}, "unknown: \\['relu'\\]"),
    ],
)
def test_bad_prior_options_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_batch(2, 4, generator=gen(0), **kwargs)


def test_graph_blocks_give_the_same_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    def draw() -> PriorBatch:
        return sample_batch(5, 6, num_obs=10, num_int_per_regime=4, num_queries=3, generator=gen(8))

    whole = draw()
    monkeypatch.setattr(scm_model, "BLOCK_BYTES", 1)  # one graph per block
    blocked = draw()
    for f in dataclasses.fields(PriorBatch):
        assert torch.equal(getattr(whole, f.name), getattr(blocked, f.name)), f.name
