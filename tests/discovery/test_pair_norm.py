"""The pair-feature QuantileNorm: normal scores of the prior's distribution, bounded, carried by checkpoints, and
added to a trained net for fine-tuning, fitted on prior draws when training starts."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from causal_engine.discovery.checkpoint import load_pfn
from causal_engine.discovery.data import fixed_set
from causal_engine.discovery.encoder import QuantileNorm
from causal_engine.discovery.models import ModelA
from causal_engine.scm.prior import SeedPrior

from .test_presets import TINY


def draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 3]: a skewed feature, a binary one (70 % zeros) and a wide symmetric one."""
    skewed = torch.empty(n).exponential_(generator=generator)
    binary = (torch.rand(n, generator=generator) < 0.3).float()
    wide = 5 * torch.randn(n, generator=generator)
    return torch.stack([skewed, binary, wide], 1)


def test_quantile_norm_gives_normal_scores_of_the_prior_keeps_order_and_bounds_the_tails() -> None:
    generator = torch.Generator().manual_seed(0)
    norm = QuantileNorm(3, 32)
    x = draws(20_000, generator)
    assert torch.equal(norm(x), x)  # the identity before it is fitted
    norm.fit(x)
    held_out = draws(20_000, generator)
    z = norm(held_out)
    assert torch.isfinite(z).all()
    for col in (0, 2):  # continuous features come out standard normal (bounded at the end levels, so sd < 1)
        # the mean of 20,000 unit-variance scores has a standard error of 0.007: 0.05 is seven of them
        assert abs(float(z[:, col].mean())) < 0.05 and 0.9 < float(z[:, col].std()) <= 1.0
    ordered = held_out[held_out[:, 0].argsort()]
    assert (norm(ordered)[:, 0].diff() >= 0).all()  # monotone
    binary = norm(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))[:, 1]
    assert binary[0] < binary[1]  # a few-valued feature keeps its order
    bound = float(torch.special.ndtri(torch.tensor(1 - 0.5 / 32)))
    far = norm(torch.tensor([[1e6, 1e6, 1e6], [-1e6, -1e6, -1e6]]))
    continuous = [0, 2]  # the binary feature's ends are ties, scored at their mean levels (next test)
    assert far[0, continuous].tolist() == pytest.approx([bound] * 2)
    assert far[1, continuous].tolist() == pytest.approx([-bound] * 2)


def test_quantile_norm_maps_a_value_many_draws_share_to_its_mid_rank_score_continuously() -> None:
    """A feature that is exactly 0 in 70 % of the prior (a clamped statistic): its repeated knots are one tie, scored
    at the tie's mean level, and a value a rounding error away from the tie scores the same (no step)."""
    generator = torch.Generator().manual_seed(1)
    clamped = torch.randn(20_000, 1, generator=generator).clamp_min(0.5) - 0.5  # P(0) = P(N(0, 1) < 0.5) = 0.69
    norm = QuantileNorm(1, 32)
    norm.fit(clamped)
    zero_knots = int((norm.knots == 0).sum())
    assert zero_knots > 1  # the tie the test is about
    mid_level = zero_knots / 2 / 32  # the mean of the levels (k + 1/2) / 32, k < zero_knots
    at_tie = norm(torch.tensor([[-1e-7], [0.0], [1e-7]]))[:, 0]
    assert at_tie.tolist() == pytest.approx([float(torch.special.ndtri(torch.tensor(mid_level)))] * 3, abs=1e-4)
    share = float((norm(clamped)[:, 0] <= at_tie[1]).float().mean())
    assert share == pytest.approx(float((clamped == 0).float().mean()))  # the tie sits below every positive draw


def test_quantile_norm_maps_rows_in_blocks_as_it_maps_each_row_alone() -> None:
    """Many rows are mapped block by block (`encoder.blocks`): every row, across the blocks' seams and in a last
    partial block, gets exactly the scores it gets mapped on its own."""
    generator = torch.Generator().manual_seed(2)
    norm = QuantileNorm(3, 32)
    norm.fit(draws(20_000, generator))
    x = draws(50_000, generator)  # 50,000 rows of 3 features: several blocks of 2^16 elements, the last one partial
    alone = torch.cat([norm(row[None]) for row in x[::997]])
    assert torch.equal(norm(x)[::997], alone)
    assert torch.equal(norm(x.view(50, 1000, 3)).view(-1, 3), norm(x))  # any leading shape


def test_a_net_with_the_norm_exports_and_loads_with_its_knots(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ModelA(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=8, pair_norm_knots=8).eval()
    net.encoder.pair_norm.fit(torch.randn(1000, net.encoder.pair_norm.knots.shape[0]))
    path = tmp_path / "pfn.pt"
    torch.save({"net_spec": net.net_spec(), "state_dict": net.state_dict()}, path)
    loaded = load_pfn(path)
    assert torch.equal(loaded.encoder.pair_norm.knots, net.encoder.pair_norm.knots)
    (batch,) = fixed_set(4, 4, 6, SeedPrior(), seed=1)
    with torch.no_grad():
        assert torch.equal(loaded.context(batch).edge_logits, net.context(batch).edge_logits)
        # off-diagonal real pairs are normalised; the diagonal keeps its flag
        _, feats = net.encoder(batch)
    assert feats.pair.abs().max() <= float(torch.special.ndtri(torch.tensor(1 - 0.5 / 8))) + 1e-5
    assert torch.equal(feats.pair[:, range(6), range(6), 11], torch.ones(4, 6))


def test_fine_tuning_a_checkpoint_without_the_norm_adds_it_and_fits_it_when_training_starts(
    compose, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    trained = ModelA(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=12)
    path = tmp_path / "trained.pt"
    torch.save({"net_spec": trained.net_spec(), "state_dict": trained.state_dict()}, path)
    cfg = compose(["experiment=pfn", "model=pfn_mlp_delta", *TINY, f"+model.init_checkpoint={path}"])
    cfg.model.net.pair_norm_knots = 8
    module = instantiate(cfg.model, _convert_="all")
    norm = module.net.encoder.pair_norm
    assert norm is not None and not bool(norm.fitted)
    assert module.net.net_spec()["kwargs"]["pair_norm_knots"] == 8
    assert torch.equal(module.net.edge_mlp[0].weight, trained.edge_mlp[0].weight)  # the trained weights kept
    trainer = L.Trainer(
        fast_dev_run=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=instantiate(cfg.data, _convert_="all"))
    assert bool(norm.fitted)
    knots = norm.knots  # [F, K]: non-decreasing along K; the correlation features spread over a range
    assert (knots.diff(dim=1) >= 0).all() and (knots[0, -1] - knots[0, 0]) > 0.1
