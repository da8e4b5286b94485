"""Models A-E: shapes and masks with mixed sizes, padding, permutation equivariance, scale invariance, D's bias."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.encoder import query_features
from causal_engine.discovery.models import ModelA, ModelB, ModelC, ModelD, ModelE, PFNNet, build_net

from .conftest import no_regimes, small_batch

VARIANTS = [ModelA, ModelB, ModelC, ModelD, ModelE]
EQUIVARIANT = [ModelA, ModelC, ModelD, ModelE]


def make(cls: type[PFNNet]) -> PFNNet:
    torch.manual_seed(0)
    return cls(d_model=32, n_heads=4, n_layers=2, n_delta_layers=1, max_nodes=12).eval()


def first(batch: DiscoveryBatch, b: int, d: int) -> DiscoveryBatch:
    """Graph b of the batch alone, cut to its d real nodes."""
    out = {}
    for name in batch.__dataclass_fields__:
        v = getattr(batch, name)[b : b + 1]
        if name == "adjacency":
            v = v[:, :d, :d]
        elif name not in ("int_sample_mask", "regime_mask"):
            v = v[..., :d]
        out[name] = v
    return DiscoveryBatch(**out)


@pytest.mark.parametrize("cls", VARIANTS)
def test_shapes_and_padding_with_two_sizes_in_one_batch(cls: type[PFNNet], mixed_batch: DiscoveryBatch) -> None:
    net = make(cls)
    with torch.no_grad():
        out = net(mixed_batch)
        alone = net(first(mixed_batch, 0, 5))  # a 5-node graph without padding
    assert out.edge_logits.shape == (4, 8, 8) and out.delta.shape == (4, 2, 8)
    assert mixed_batch.node_mask.sum(1).tolist() == [5, 5, 8, 8]
    assert (out.delta[:2, :, 5:] == 0).all()  # padding nodes predict nothing
    torch.testing.assert_close(out.edge_logits[0, :5, :5], alone.edge_logits[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.delta[0, :, :5], alone.delta[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", EQUIVARIANT)
def test_permuting_nodes_permutes_outputs(cls: type[PFNNet]) -> None:
    batch = small_batch(sizes=(7,))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    net = make(cls)
    with torch.no_grad():
        out, out_p = net(batch), net(batch.permute_nodes(perm))
    torch.testing.assert_close(out_p.edge_logits, out.edge_logits[:, perm][:, :, perm], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out_p.delta, out.delta[..., perm], atol=1e-4, rtol=1e-4)


def test_model_b_uses_node_identity() -> None:
    batch = small_batch(sizes=(7,))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    net = make(ModelB)
    with torch.no_grad():
        out, out_p = net(batch), net(batch.permute_nodes(perm))
    assert not torch.allclose(out_p.delta, out.delta[..., perm], atol=1e-4)


@pytest.mark.parametrize("cls", VARIANTS)
def test_rescaling_a_column_does_not_change_the_prediction(cls: type[PFNNet]) -> None:
    batch = small_batch(sizes=(6,))
    scale = torch.tensor([1.0, 1000.0, 1.0, 0.01, 1.0, 3.0])
    shift = torch.tensor([0.0, -50.0, 7.0, 0.0, 0.0, 2.0])

    def rescale(x: torch.Tensor) -> torch.Tensor:
        return x * scale + shift

    moved = replace(
        batch,
        observational=rescale(batch.observational),
        interventional=rescale(batch.interventional),
        query=rescale(batch.query),
        query_values=torch.where(batch.query_targets, rescale(batch.query_values), 0.0),
        regime_values=torch.where(batch.regime_targets, rescale(batch.regime_values), 0.0),
        delta=batch.delta * scale,
    )
    net = make(cls)
    with torch.no_grad():
        out, out_m = net(batch), net(moved)
    torch.testing.assert_close(out_m.edge_logits, out.edge_logits, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(out_m.delta, out.delta, atol=1e-3, rtol=1e-3)  # standardised deltas


def test_model_d_prediction_follows_its_attention_bias(mixed_batch: DiscoveryBatch) -> None:
    net = make(ModelD)
    b = mixed_batch
    with torch.no_grad():
        ctx = net.context(b)
        query_feats = query_features(b.query, b.query_targets, b.query_values, ctx.mean, ctx.std, b.node_mask)
        base = net.deltas(ctx.h, query_feats, ctx.pair, ctx.edge_logits, b.node_mask)
        flipped = net.deltas(ctx.h, query_feats, ctx.pair, -ctx.edge_logits, b.node_mask)
        net.bias_scale = 0.0
        unbiased = net.deltas(ctx.h, query_feats, ctx.pair, ctx.edge_logits, b.node_mask)
    assert (base - flipped).abs().max() > 1e-3
    assert (base - unbiased).abs().max() > 1e-3
    bias = ModelD.structural_bias(net, torch.full((1, 3, 3), 50.0))
    assert bias.abs().max() < 1e-6  # sure edges: no penalty; a node always attends to itself


def test_model_c_samples_in_training_and_is_deterministic_in_eval(mixed_batch: DiscoveryBatch) -> None:
    net = make(ModelC)
    net.update_schedule(10_000)
    assert net.tau == pytest.approx(net.tau_end)
    net.update_schedule(net.anneal_steps // 2)
    assert net.tau == pytest.approx((net.tau_start + net.tau_end) / 2)
    with torch.no_grad():
        a, b = net(mixed_batch), net(mixed_batch)
        net.train()
        c = net(mixed_batch)
    assert a.edge_sample is None and torch.equal(a.edge_logits, b.edge_logits)
    assert c.edge_sample is not None and not torch.allclose(c.edge_sample, c.edge_probs)


@pytest.mark.parametrize("cls", VARIANTS)
def test_net_spec_rebuilds_the_same_net(cls: type[PFNNet], mixed_batch: DiscoveryBatch) -> None:
    net = make(cls)
    twin = build_net(net.net_spec())
    twin.load_state_dict(net.state_dict())
    twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(mixed_batch).delta, net(mixed_batch).delta)


def test_intervened_nodes_get_the_exact_delta(mixed_batch: DiscoveryBatch) -> None:
    with torch.no_grad():
        out = make(ModelA)(mixed_batch)
    from causal_engine.discovery.encoder import standardise

    std = standardise(mixed_batch).std[:, None].expand_as(out.delta)
    t = mixed_batch.query_targets
    torch.testing.assert_close(out.delta[t] * std[t], mixed_batch.delta[t], atol=1e-4, rtol=1e-4)


def test_too_many_nodes_is_an_error() -> None:
    net = ModelA(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=5)
    with pytest.raises(ValueError, match="max_nodes=5"):
        net(small_batch(sizes=(6,)))


@pytest.mark.parametrize("cls", VARIANTS)
def test_no_interventional_regime_at_all(cls: type[PFNNet]) -> None:
    batch = small_batch(sizes=(5,))
    empty = no_regimes(batch)
    with torch.no_grad():
        out = make(cls)(empty)
    assert torch.isfinite(out.edge_logits).all() and torch.isfinite(out.delta).all()
