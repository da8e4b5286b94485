"""The JEPA's pieces: EMA math, the momentum ramp, tube masks, the module."""

import copy
from functools import partial

import numpy as np
import pytest
import torch

from causal_engine.dml.simulate import simulate_videos
from causal_engine.jepa.masks import TubeMaskCollator, tube_masks
from causal_engine.jepa.module import JEPAModule, ema_update, momentum_at, normalise_targets, soft_argmax


def _pair():
    torch.manual_seed(0)
    online = torch.nn.Linear(3, 2)
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    return online, target


def test_ema_momentum_zero_copies_the_online_encoder():
    online, target = _pair()
    ema_update(target, online, 0.0)
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t, o)


def test_ema_momentum_one_freezes_the_target():
    online, target = _pair()
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    for t, b in zip(target.parameters(), before, strict=True):
        torch.testing.assert_close(t, b)


def test_ema_intermediate_momentum_is_the_weighted_average():
    online, target = _pair()
    expected = [0.996 * t + 0.004 * o for t, o in zip(target.parameters(), online.parameters(), strict=True)]
    ema_update(target, online, 0.996)
    for t, e in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(t, e)


def test_momentum_ramps_linearly_from_start_to_end():
    assert momentum_at(0, 100, 0.996, 1.0) == 0.996
    assert momentum_at(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert momentum_at(100, 100, 0.996, 1.0) == 1.0
    assert momentum_at(150, 100, 0.996, 1.0) == 1.0


@pytest.mark.parametrize("grid", [(4, 4, 4), (2, 3, 5), (1, 2, 2)])
def test_masks_are_disjoint_from_context_and_span_all_frames(grid):
    gt, gh, gw = grid
    ctx, pred = tube_masks(16, grid, generator=torch.Generator().manual_seed(0))
    assert ctx.shape[0] == pred.shape[0] == 16 and ctx.shape[1] > 0 and pred.shape[1] > 0
    area = gh * gw
    for c, p in zip(ctx.tolist(), pred.tolist(), strict=True):
        assert not set(c) & set(p)
        assert max(c + p) < gt * area
        for idx in (c, p):  # a tube: every spatial position present in every frame
            by_frame = [sorted(i % area for i in idx if i // area == t) for t in range(gt)]
            assert all(f == by_frame[0] for f in by_frame) and by_frame[0]


def test_mask_collator_is_seeded_and_adds_masks():
    items = [{"video": torch.zeros(1, 8, 16, 16)} for _ in range(4)]
    a = TubeMaskCollator((2, 4, 4), seed=3)(items)
    b = TubeMaskCollator((2, 4, 4), seed=3)(items)
    c = TubeMaskCollator((2, 4, 4), seed=4)(items)
    assert a["video"].shape == (4, 1, 8, 16, 16)
    torch.testing.assert_close(a["mask_pred"], b["mask_pred"])
    assert not all(torch.equal(x, y) for x, y in ((a["mask_pred"], c["mask_pred"]), (a["mask_ctx"], c["mask_ctx"])))


def test_jepa_step_learns_and_embeds():
    torch.manual_seed(0)
    s = simulate_videos(32, dims=(1, 4, 8, 8), seed=0)
    module = JEPAModule(
        optimizer=partial(torch.optim.AdamW, lr=3e-3),
        tubelet=(2, 4, 4),
        rep_dim=12,
        heads=2,
        pred_dim=6,
        pred_depth=1,
        depth=1,
        pool="frames_max",
    )
    batch = TubeMaskCollator(module.encoder.tubelet, seed=0)([{"video": v} for v in s.videos])
    opt = module.configure_optimizers()
    losses = []
    for _ in range(30):
        loss = module._step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema_update(module.target_encoder, module.encoder, 0.9)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not any(p.requires_grad for p in module.target_encoder.parameters())
    z = module.embed(s.videos)
    assert z.dtype == np.float32  # the model's precision: a float64 copy would only double the memory
    assert z.shape == (32, 2 * 3 * 12)  # frames_max pooling: T' = 2 time steps × (mean, std, max) × rep_dim
    tokens = module.target_encoder(s.videos)  # [32, T'H'W' = 2 · 4, 12]
    per_frame = tokens.reshape(32, 2, 4, 12)
    np.testing.assert_allclose(z[:, :12], per_frame[:, 0].mean(1).detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(z[:, 12:24], per_frame[:, 0].std(1, correction=0).detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(z[:, 24:36], per_frame[:, 0].amax(1).detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(z[:, 36:48], per_frame[:, 1].mean(1).detach().numpy(), atol=1e-5)
    module.hparams.pool = "frames_std"  # (mean, std) per time step: the same numbers without the max
    np.testing.assert_allclose(module.embed(s.videos)[:, :24], z[:, :24], atol=1e-6)
    assert module.embed(s.videos).shape == (32, 2 * 2 * 12)
    module.hparams.pool = "frames"
    assert module.embed(s.videos).shape == (32, 2 * 12)  # mean over space per time step only
    module.hparams.embed_from = ("target", "online")  # the online encoder's pooled tokens follow the target's
    both = module.embed(s.videos)
    online = module.pool(module.encoder(s.videos), s.videos.shape).detach().numpy()
    assert both.shape == (32, 2 * 2 * 12) and not np.allclose(both[:, 24:], both[:, :24])
    np.testing.assert_allclose(both[:, 24:], online, atol=1e-5)
    with pytest.raises(ValueError, match="model.embed_from"):
        JEPAModule(optimizer=partial(torch.optim.AdamW), embed_from=("target", "target"))


def test_target_norms_weigh_tokens_equally_or_by_how_much_they_stand_out():
    torch.manual_seed(0)
    h = 0.1 * torch.randn(4, 16, 8)  # [B, N, D]: plain background tokens...
    h[:, 3] += 5.0 * torch.randn(4, 8)  # ...and one object token per sample
    token = normalise_targets(h, "token")
    torch.testing.assert_close(token, torch.nn.functional.layer_norm(h, (8,)))
    batch = normalise_targets(h, "batch")
    flat = batch.flatten(0, 1)  # [B·N, D]: every feature standardised over the batch's tokens
    torch.testing.assert_close(flat.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(0), torch.ones(8), atol=1e-5, rtol=0)
    background = [i for i in range(16) if i != 3]
    # Layer norm gives each token the same scale; the batch norm keeps the object token far larger.
    assert token[:, 3].norm(dim=-1).mean() / token[:, background].norm(dim=-1).mean() < 1.5
    assert batch[:, 3].norm(dim=-1).mean() / batch[:, background].norm(dim=-1).mean() > 10
    with pytest.raises(ValueError, match="model.target_norm"):
        normalise_targets(h, "layer")
    with pytest.raises(ValueError, match="model.target_norm"):
        JEPAModule(optimizer=partial(torch.optim.AdamW), target_norm="layer")


def test_soft_argmax_finds_where_each_feature_fires_and_frames_xy_appends_it():
    # A 4×8 token grid (H' × W'), two frames, three features: feature 0 peaks at row 1, column 6 in frame 0 and at
    # row 3, column 0 in frame 1; feature 1 at the opposite corners; feature 2 is noise with no peak.
    torch.manual_seed(0)
    per_frame = 0.01 * torch.randn(2, 2, 4 * 8, 3)  # [B, T', H'W', D]
    for t, (row, col) in enumerate([(1, 6), (3, 0)]):
        per_frame[:, t, row * 8 + col, 0] = 5.0
        per_frame[:, t, (3 - row) * 8 + (7 - col), 1] = 5.0
    mean, std = per_frame.mean(dim=2), per_frame.std(dim=2, correction=0)
    x, y = soft_argmax(per_frame, mean, std, (4, 8), temperature=0.2)  # each [B, T', D]
    grid_x, grid_y = torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 4)
    for t, (row, col) in enumerate([(1, 6), (3, 0)]):
        torch.testing.assert_close(x[:, t, 0], grid_x[col].expand(2), atol=1e-3, rtol=0)
        torch.testing.assert_close(y[:, t, 0], grid_y[row].expand(2), atol=1e-3, rtol=0)
        torch.testing.assert_close(x[:, t, 1], grid_x[7 - col].expand(2), atol=1e-3, rtol=0)
    # The weights are invariant to a feature's scale and offset (standardised over space first).
    x2, y2 = soft_argmax(3.0 * per_frame + 1.0, 3.0 * mean + 1.0, 3.0 * std, (4, 8), temperature=0.2)
    torch.testing.assert_close(x2, x, atol=1e-4, rtol=0)
    torch.testing.assert_close(y2, y, atol=1e-4, rtol=0)
    # A warmer softmax spreads the weight and pulls the estimate towards the centre.
    warm, _ = soft_argmax(per_frame, mean, std, (4, 8), temperature=5.0)
    assert warm[:, 0, 0].abs().max() < 0.5 * x[:, 0, 0].abs().min()

    module = JEPAModule(optimizer=partial(torch.optim.AdamW), rep_dim=12, heads=2, pred_dim=6, pool="frames_xy")
    video = torch.randn(5, 1, 4, 8, 16)  # grid T', H', W' = 2, 4, 8
    z = module.embed(video)
    assert z.shape == (5, 2 * 5 * 12)  # T' × (mean, std, max, x, y) × rep_dim
    module.hparams.pool = "frames_max"
    np.testing.assert_allclose(z.reshape(5, 2, 60)[:, :, :36], module.embed(video).reshape(5, 2, 36), atol=1e-5)
    tokens = module.target_encoder(video).reshape(5, 2, 32, 12)
    x, y = soft_argmax(tokens, tokens.mean(2), tokens.std(2, correction=0), (4, 8), 0.5)
    np.testing.assert_allclose(z.reshape(5, 2, 60)[:, :, 36:48], x.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(z.reshape(5, 2, 60)[:, :, 48:], y.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="model.xy_temperature"):
        JEPAModule(optimizer=partial(torch.optim.AdamW), xy_temperature=0.0)
