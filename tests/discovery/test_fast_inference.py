"""The fast inference path computes the same function as the straightforward one.

The shipped checkpoint reads features computed by the reference code below (ranks by counting, tied values
sharing their mean rank, torch.quantile-style quartiles, normal scores from Phi^-1 of counted ranks, masked copies
for regime statistics, the edge MLP on the concatenated input). The vectorised encoder (branch-free search, score
tables, blocks) and edge head must reproduce them up to float rounding, or the checkpoint's predictions would change.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import Tensor

from causal_engine.discovery import encoder, models
from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.checkpoint import load_pfn
from causal_engine.discovery.discover import predict
from causal_engine.discovery.encoder import blocks, context_features, query_features
from causal_engine.discovery.models import ModelA, ModelD, ModelE, PFNNet

from .conftest import no_regimes, small_batch

CLIP, EPS = 50.0, 1e-6
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "pfn.pt"


def mid_ranks(obs: Tensor) -> Tensor:
    """0-based ranks within each column of [B, S, d], ties sharing their mean rank, by counting."""
    below = (obs[:, :, None] > obs[:, None]).sum(2)  # [B, S, d] entries below each entry
    at_or_below = (obs[:, :, None] >= obs[:, None]).sum(2)
    return (below + at_or_below - 1).float() / 2


def copula_scores(batch: DiscoveryBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Observational, interventional and do-values as normal scores, counted the straightforward way: any value v
    scores Phi^-1((#{observations < v} + #{observations <= v} + 1) / (2S + 2)), so an observation of mid-rank r
    scores Phi^-1((r + 1) / (S + 1)); a column with ties is then centred and scaled to the sd of a tie-free one
    (at most 4x; a constant column keeps its scores)."""
    obs, s = batch.observational, batch.observational.shape[1]

    def count(v: Tensor) -> Tensor:  # v [B, ..., d] -> the score of every entry
        o = obs.view(obs.shape[0], *([1] * (v.dim() - 2)), s, obs.shape[2])
        m = (v.unsqueeze(-2) > o).sum(-2) + (v.unsqueeze(-2) >= o).sum(-2)
        return torch.special.ndtri((m + 1).float() / (2 * s + 2))

    tied = (obs.sort(1).values.diff(dim=1) == 0).any(1) & batch.node_mask  # [B, d]
    observational = count(obs)
    mean, sd = observational.mean(1), observational.std(1)  # [B, d]
    ladder_sd = torch.special.ndtri(torch.arange(1, s + 1) / (s + 1)).std()
    stretch = torch.where(sd > 0, (ladder_sd / sd).clamp_max(4.0), 1.0)  # a constant column is not stretched

    def tie_units(x: Tensor) -> Tensor:  # x [B, ..., d]
        shape = (x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])
        return torch.where(tied.view(shape), (x - mean.view(shape)) * stretch.view(shape), x)

    return tie_units(observational), tie_units(count(batch.interventional)), tie_units(count(batch.regime_values))


def reference_features(batch: DiscoveryBatch, shrinkage: float, space: str = "zscore") -> tuple[Tensor, ...]:
    """Node [B, d, 7], query [B, Q, d, 3] and pair [B, d, d, 32] features, written the straightforward way."""
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
    if space == "copula":
        obs, inter, r_values = copula_scores(batch)
        obs, inter = obs * node[:, None], inter * node[:, None, None]
        r_values = r_values * (batch.regime_targets & batch.node_mask[:, None]).float()
    eye = torch.eye(batch.num_nodes)

    # In the copula the location and spread read the tie-free scores (constants), as in training.
    shape = torch.special.ndtri(torch.arange(1.0, obs.shape[1] + 1) / (obs.shape[1] + 1))[None, :, None] * node[:, None]
    q = torch.quantile(shape if space == "copula" else obs, torch.tensor([0.25, 0.5, 0.75]), dim=1)  # [3, B, d]
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

    ranks = mid_ranks(obs)
    ranks = (ranks - ranks.mean(1, keepdim=True)) / ranks.std(1, keepdim=True).clamp_min(EPS)
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
    pair = torch.cat([pair, reference_structure(obs, pearson, prec, batch.node_mask) * (1 - eye)[..., None]], -1)
    pair = torch.cat([pair, reference_size_and_ranks(partial, batch.node_mask, obs.shape[1])], -1)
    return node_feats, query_feats, (pair * (node[:, :, None] * node[:, None, :])[..., None]).clamp(-CLIP, CLIP)


def reference_size_and_ranks(partial: Tensor, node_mask: Tensor, s: int) -> Tensor:
    """Features 29-31 [B, d, d, 3] by counting: 1 / sqrt(S - 1), and the rank of |partial_ij| among the real
    |partial_ik| of row i (k != i), and among the real |partial_kj| of column j (k != j), over n - 2."""
    b, d, _ = partial.shape
    out = torch.zeros(b, d, d, 3)
    a = partial.abs()
    for g in range(b):
        real = node_mask[g].nonzero().flatten().tolist()
        n = len(real)
        for i in real:
            for j in real:
                if i == j:
                    continue
                out[g, i, j, 0] = 1 / math.sqrt(s - 1)
                out[g, i, j, 1] = sum(bool(a[g, i, k] < a[g, i, j]) for k in real if k != i) / max(n - 2, 1)
                out[g, i, j, 2] = sum(bool(a[g, k, j] < a[g, i, j]) for k in real if k != j) / max(n - 2, 1)
    return out


def reference_structure(obs: Tensor, corr: Tensor, prec: Tensor, node_mask: Tensor) -> Tensor:
    """The 17 structure features [B, d, d, 17], pair by pair in float64 over the real nodes only: first-order
    partial correlations by their formula, additive-noise residuals from ridge least squares, the nonlinear dependence
    as the correlations of sin and cos views one pair at a time."""
    b, s, d = obs.shape
    out = torch.zeros(b, d, d, 17, dtype=torch.float64)
    x_all, c_all, p_all = obs.double(), corr.double(), prec.double()
    for g in range(b):
        real = node_mask[g].nonzero().flatten().tolist()
        x, c, p = x_all[g], c_all[g], p_all[g]
        xc = x.clamp(-5, 5)
        resid = x @ p / p.diagonal().clamp_min(EPS)

        def rho(i: int, j: int, k: int, c: Tensor = c) -> float:
            denom = ((1 - c[i, k] ** 2) * (1 - c[j, k] ** 2)).clamp_min(1e-6).sqrt()
            return float((c[i, j] - c[i, k] * c[j, k]) / denom)

        def corr_of(a: Tensor, e: Tensor) -> float:
            return float(torch.corrcoef(torch.stack([a, e]))[0, 1]) if e.std() > 0 and a.std() > 0 else 0.0

        def views(a: Tensor) -> list[Tensor]:
            return [f(w * a) for w in (1.0, 2.0) for f in (torch.sin, torch.cos)]

        def nonlinear(a: Tensor, e: Tensor) -> float:
            power = sum(corr_of(u, v) ** 2 for u in views(a) for v in views(e)) / 16 - 1 / (s - 1)
            return max(power, 0.0) ** 0.5

        r_std = (resid - resid.mean(0)) / resid.std(0).clamp_min(EPS)

        for i in real:
            for j in real:
                if i == j:
                    continue
                others = [k for k in real if k not in (i, j)]
                ci = [abs(max(-1.0, min(1.0, rho(i, j, k)))) for k in others]
                gain = [abs(max(-1.0, min(1.0, rho(i, k, j)))) - abs(float(c[i, k])) for k in others]
                design = torch.stack([xc[:, i] ** a for a in range(4)], 1)
                # The encoder's ridge (1e-4 on the normal equations): a tied column's cubic design can be singular.
                gram = design.T @ design / s + 1e-4 * torch.eye(4, dtype=design.dtype)
                fit = design @ torch.linalg.solve(gram, design.T @ xc[:, j : j + 1] / s)
                r2 = (xc[:, j] - fit[:, 0]) ** 2
                var_j = xc[:, j].var(unbiased=False).clamp_min(EPS)
                err = r2.mean().clamp_min(1e-3 * var_j)
                het = [
                    ((f * r2).mean() - f.mean() * err) / (f.std(unbiased=False).clamp_min(EPS) * err)
                    for f in (xc[:, i], xc[:, i] ** 2)
                ]
                e2 = resid[:, j] ** 2
                out[g, i, j, 0] = min(ci) if ci else abs(float(c[i, j]))
                out[g, i, j, 1] = max(gain) if gain else 0.0
                out[g, i, j, 3] = 1 - 1 / p[i, i].clamp_min(1.0)
                out[g, i, j, 5] = 1 - err / var_j
                out[g, i, j, 7], out[g, i, j, 9] = (h.clamp(-10, 10) for h in het)
                out[g, i, j, 11] = (abs(corr_of(x[:, i], e2)) + abs(corr_of(x[:, i] ** 2, e2))) / 2
                out[g, i, j, 13] = c[i, j] * (x[:, i] * torch.tanh(x[:, j]) - torch.tanh(x[:, i]) * x[:, j]).mean()
                out[g, i, j, 14] = nonlinear(x[:, i], x[:, j])
                out[g, i, j, 15] = nonlinear(x[:, i], r_std[:, j])
    for forward, backward in ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (15, 16)):
        out[..., backward] = out[..., forward].mT
    return out.float()


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


BATCHES = {
    "padded_mixed_sizes": small_batch(),
    "d12": small_batch(sizes=(12,), graphs=3, seed=3),
    "no_regimes": no_regimes(small_batch()),
    "ties_and_units": saturated(small_batch()),
}


@pytest.mark.parametrize("space", ["zscore", "copula"])
@pytest.mark.parametrize("batch", BATCHES.values(), ids=BATCHES.keys())
def test_vectorised_features_equal_the_reference_features(batch: DiscoveryBatch, space: str) -> None:
    node, query, pair = reference_features(batch, 0.2, space)
    ctx = context_features(batch, 0.2, space)
    b = batch
    fast_query = query_features(b.query, b.query_targets, b.query_values, ctx.mean, ctx.std, b.node_mask)
    torch.testing.assert_close(ctx.node, node, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_query, query, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ctx.pair[..., :12], pair[..., :12], atol=1e-5, rtol=1e-5)
    # The structure features are float32 moments (the additive-noise ones differences of larger terms).
    torch.testing.assert_close(ctx.pair[..., 12:], pair[..., 12:], atol=2e-2, rtol=1e-3)
    torch.testing.assert_close(ctx.pair[..., 26:], pair[..., 26:], atol=1e-5, rtol=1e-5)  # nonlinear, rows, ranks


def test_a_column_constant_in_the_observational_rows_keeps_the_copula_features_bounded() -> None:
    """A node saturated in every observational row but not under interventions (common at the simulator's clamp)
    has no spread to stretch: the interventional shifts (node features 2 and 4) stay within the sample's normal
    scores times the largest stretch of the batch's other tied columns (it used to reach 1e6)."""
    batch = small_batch(sizes=(6,), graphs=2, seed=6)
    constant = batch.observational.clone()
    constant[:, :, 2] = 20.0  # the clamp; interventional rows keep their values
    ctx = context_features(replace(batch, observational=constant), 0.2, "copula")
    bound = float(torch.special.ndtri(torch.tensor(1 - 0.5 / (batch.observational.shape[1] + 1))))
    assert ctx.node[..., [2, 4]].abs().max() <= encoder._MAX_STRETCH * bound and torch.isfinite(ctx.pair).all()


@pytest.mark.parametrize("space", ["zscore", "copula"])
def test_features_in_small_blocks_equal_one_block(space: str, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = saturated(small_batch(sizes=(5, 9), graphs=2, seed=4))
    whole = context_features(batch, 0.2, space)
    monkeypatch.setattr(encoder, "BLOCK", 7)  # a few columns of one graph per block
    cut = context_features(batch, 0.2, space)
    torch.testing.assert_close(cut.node, whole.node, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(cut.pair, whole.pair, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("graphs", "rows", "row_size"), [(5, 3, 2), (4, 9, 1000), (3, 4, 1 << 16), (2, 6, 0)])
def test_blocks_cover_every_row_of_every_graph_once(graphs: int, rows: int, row_size: int) -> None:
    seen = torch.zeros(graphs, rows, dtype=torch.long)
    for g, i in blocks(graphs, rows, row_size):
        seen[g, i] += 1
        assert seen[g, i].numel() * row_size <= encoder.BLOCK or seen[g, i].numel() == 1  # a row is never cut
    assert bool((seen == 1).all())


@pytest.mark.parametrize("s", [1, 2, 3, 7, 64, 100])
def test_search_counts_the_entries_below_like_searchsorted(s: int) -> None:
    generator = torch.Generator().manual_seed(s)
    sample = torch.randint(-3, 4, (2, 3, s), generator=generator).float().sort(-1).values  # ties included
    values = torch.cat([torch.randint(-5, 6, (2, 3, 40), generator=generator).float(), sample], -1)
    columns = torch.nn.functional.pad(sample, (0, 1), value=float("nan"))  # the padding entry is never read
    offsets = torch.arange(6).view(2, 3, 1) * (s + 1)
    got = encoder._search(columns, values)
    assert torch.equal(got.long() - offsets, torch.searchsorted(sample, values))


def test_shipped_checkpoint_reads_the_reference_features() -> None:
    """The shipped weights give the same edge logits from the fast path as from the reference features."""
    net = load_pfn(SHIPPED)
    batch = small_batch(sizes=(6, 11), graphs=2, seed=5)
    node, _, pair = reference_features(batch, net.encoder.shrinkage, net.encoder.feature_space)
    with torch.inference_mode():
        _, expected = net.structure(net.encoder.node_proj(node), pair, batch.node_mask)
        # the structure features are float32 moments (within 2e-2 of the float64 reference): logits within 2e-3
        torch.testing.assert_close(net.context(batch).edge_logits, expected, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("block", [models.EDGE_BLOCK, 100])
def test_edge_head_equals_the_mlp_on_the_concatenated_input(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    net = ModelA(d_model=32, n_heads=4, n_layers=1, n_delta_layers=1).eval()
    h, pair = torch.randn(3, 9, 32), torch.randn(3, 9, 9, encoder.NUM_PAIR_FEATURES)
    p, c = net.parent(h), net.child(h)
    joint = torch.cat([p[:, :, None] + c[:, None, :], pair], -1)  # [B, d, d, D + F]
    expected = p @ c.mT / 32**0.5 + net.edge_mlp(joint).squeeze(-1)
    monkeypatch.setattr(models, "EDGE_BLOCK", block)  # 100: a few rows of one graph per block
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
