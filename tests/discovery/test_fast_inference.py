"""The fast inference path computes the same function as the straightforward one.

The shipped checkpoint was trained on features computed by the reference code below (a second argsort for
ranks, torch.quantile-style quartiles from a sort, masked copies for regime statistics, the edge MLP on the
concatenated input). The vectorised encoder and edge head must reproduce them up to float rounding, or the
checkpoint's predictions would change.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor

from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.discover import predict
from causal_engine.discovery.encoder import context_features, query_features
from causal_engine.discovery.models import ModelA, ModelD, ModelE, PFNNet

from .conftest import no_regimes, small_batch

CLIP, EPS = 50.0, 1e-6


def reference_features(batch: DiscoveryBatch, shrinkage: float) -> tuple[Tensor, Tensor, Tensor]:
    """Node [B, d, 7], query [B, Q, d, 3] and pair [B, d, d, 12] features, written the straightforward way."""
    node = batch.node_mask.float()
    mean, std = batch.observational.mean(1), batch.observational.std(1).clamp_min(EPS)  # [B, d]

    def z(x: Tensor, m: Tensor, s: Tensor, mask: Tensor) -> Tensor:
        return ((x - m) / s).clamp(-CLIP, CLIP) * mask

    m, s = mean[:, None], std[:, None]
    obs = z(batch.observational, m, s, node[:, None])
    inter = z(batch.interventional, m[:, None], s[:, None], node[:, None, None])
    query = z(batch.query, m, s, node[:, None])
    q_values = z(batch.query_values, m, s, (batch.query_targets & batch.node_mask[:, None]).float())
    r_values = z(batch.regime_values, m, s, (batch.regime_targets & batch.node_mask[:, None]).float())
    eye = torch.eye(batch.num_nodes)

    q = torch.quantile(obs, torch.tensor([0.25, 0.5, 0.75]), dim=1)  # [3, B, d]
    location, spread = q[1], torch.log((q[2] - q[0]) / 1.349 + 1e-3) * node

    w = batch.int_sample_mask.float() * batch.regime_mask[:, :, None].float()  # [B, R, S]
    n = w.sum(2).clamp_min(1.0)
    r_mean = (inter * w[..., None]).sum(2) / n[..., None]
    var = (((inter - r_mean[:, :, None]) ** 2) * w[..., None]).sum(2) / (n[..., None] - 1).clamp_min(1)
    r_logstd, r_ok = 0.5 * torch.log(var + 1e-4), (w.sum(2) > 1).float()
    targets = batch.regime_targets.float() * r_ok[..., None]
    other = (1 - batch.regime_targets.float()) * r_ok[..., None]
    n_other = other.sum(1).clamp_min(1)
    int_max = (r_mean.abs() * other).amax(1) if r_mean.shape[1] else torch.zeros_like(node)
    n_regimes = r_ok.sum(1)
    node_feats = (
        torch.stack(
            [
                location,
                spread,
                (r_mean * other).sum(1) / n_other,
                (r_logstd * other).sum(1) / n_other,
                int_max,
                targets.sum(1) / n_regimes.clamp_min(1)[:, None],
                (n_regimes == 0).float()[:, None].expand_as(node),
            ],
            -1,
        )
        * node[..., None]
    )
    query_feats = torch.stack([query, batch.query_targets.float(), q_values], -1) * node[:, None, :, None]

    def corr(x: Tensor) -> Tensor:
        return x.transpose(1, 2) @ x / (x.shape[1] - 1) * node[:, :, None] * node[:, None, :]

    ranks = obs.argsort(1).argsort(1).float()
    ranks = (ranks - ranks.mean(1, keepdim=True)) / ranks.std(1, keepdim=True)
    pearson, spearman = corr(obs), corr(ranks * node[:, None])
    prec = torch.linalg.inv((1 - shrinkage) * pearson + shrinkage * eye * node[:, None, :] + eye * (1 - node)[:, None])
    dg = prec.diagonal(dim1=1, dim2=2).clamp_min(EPS).sqrt()
    partial = -prec / dg[:, :, None] / dg[:, None, :] * (1 - eye)
    n_i = targets.sum(1).clamp_min(1)[:, :, None]
    ti = targets.transpose(1, 2)
    v = (r_values * batch.regime_targets.float()).sum(-1, keepdim=True)
    shift = ti @ (r_mean * other) / n_i
    abs_shift = ti @ (r_mean.abs() * other) / n_i
    slope = ti @ (r_mean * v / (v**2 + 1) * other) / n_i
    logstd = ti @ (r_logstd * other) / n_i
    has_int = (targets.sum(1) > 0).float()[:, :, None].expand_as(shift)
    forward = [pearson, spearman, partial, shift, abs_shift, slope, logstd, has_int]
    pair = torch.stack([*forward, shift.mT, abs_shift.mT, slope.mT, eye.expand_as(shift)], -1)
    pair = torch.cat([pair[..., :-1] * (1 - eye)[..., None], pair[..., -1:]], -1)
    return node_feats, query_feats, (pair * (node[:, :, None] * node[:, None, :])[..., None]).clamp(-CLIP, CLIP)


def saturated(batch: DiscoveryBatch) -> DiscoveryBatch:
    """Clip the samples so many values tie (as at the simulator's clamp) and one unit is 1000x larger."""
    scale = torch.ones(batch.num_nodes)
    scale[1] = 1000.0
    return replace(
        batch,
        observational=batch.observational.clamp(-1, 1) * scale,
        interventional=batch.interventional.clamp(-1, 1) * scale,
        query=batch.query * scale,
    )


@pytest.mark.parametrize(
    "batch",
    [small_batch(), small_batch(sizes=(12,), graphs=3, seed=3), no_regimes(small_batch()), saturated(small_batch())],
    ids=["padded_mixed_sizes", "d12", "no_regimes", "ties_and_units"],
)
def test_vectorised_features_equal_the_reference_features(batch: DiscoveryBatch) -> None:
    node, query, pair = reference_features(batch, shrinkage=0.2)
    ctx = context_features(batch, shrinkage=0.2)
    b = batch
    fast_query = query_features(b.query, b.query_targets, b.query_values, ctx.mean, ctx.std, b.node_mask)
    torch.testing.assert_close(ctx.node, node, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_query, query, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ctx.pair, pair, atol=1e-5, rtol=1e-5)


def test_edge_head_equals_the_mlp_on_the_concatenated_input() -> None:
    torch.manual_seed(0)
    net = ModelA(d_model=32, n_heads=4, n_layers=1, n_delta_layers=1).eval()
    h, pair = torch.randn(3, 9, 32), torch.randn(3, 9, 9, 12)
    p, c = net.parent(h), net.child(h)
    joint = torch.cat([p[:, :, None] + c[:, None, :], pair], -1)  # [B, d, d, D + F]
    expected = p @ c.mT / 32**0.5 + net.edge_mlp(joint).squeeze(-1)
    with torch.no_grad():
        torch.testing.assert_close(net.edge_head(h, pair), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [ModelA, ModelD, ModelE])
def test_chunked_queries_reuse_the_context_and_match_one_pass(cls: type[PFNNet]) -> None:
    torch.manual_seed(0)
    net = cls(d_model=32, n_heads=4, n_layers=2, n_delta_layers=1).eval()
    batch = small_batch(sizes=(6,), graphs=1)
    with torch.no_grad():
        out = net(batch)
        probs, deltas = predict(net, batch, query_batch=1)  # one query per chunk
    std = context_features(batch, net.encoder.shrinkage).std
    torch.testing.assert_close(probs, out.edge_probs[0] * (1 - torch.eye(6)))
    torch.testing.assert_close(deltas, out.delta[0] * std, atol=1e-5, rtol=1e-5)
