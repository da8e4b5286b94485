"""The per-pair head: the identity until fitted, fitted on prior draws with the trunk frozen, carried by
checkpoints, and its logistic mix a maximum-likelihood fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from causal_engine.discovery.checkpoint import load_pfn, save_pfn
from causal_engine.discovery.data import fixed_set
from causal_engine.discovery.models import ModelA
from causal_engine.discovery.pair_head import PairHead, fit_pair_head, logistic_mix
from causal_engine.scm.prior import SeedPrior


def tiny_net(**kw: int) -> ModelA:
    torch.manual_seed(0)
    return ModelA(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=12, **kw).eval()


def test_an_unfitted_head_leaves_the_trunk_logits_unchanged() -> None:
    bare, headed = tiny_net(), tiny_net(pair_head_hidden=8)
    headed.load_state_dict(bare.state_dict(), strict=False)
    (batch,) = fixed_set(4, 4, 6, SeedPrior(), seed=1)
    with torch.no_grad():
        assert torch.equal(headed.context(batch).edge_logits, bare.context(batch).edge_logits)


def test_a_fitted_head_changes_the_logits_not_the_deltas_and_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    net, prior = tiny_net(), SeedPrior()
    (batch,) = fixed_set(4, 4, 6, prior, seed=1)
    with torch.no_grad():
        before = net(batch)
    head = fit_pair_head(net, [prior], hidden=8, sizes=(5, 8), graphs=16, epochs=2, seed=3)
    assert net.pair_head is None  # fitting does not change the net
    assert bool(head.norm.fitted) and float(head.mix[1]) != 0.0
    net.add_pair_head(head)
    assert net.net_spec()["kwargs"]["pair_head_hidden"] == 8
    with torch.no_grad():
        after = net(batch)
    assert not torch.allclose(after.edge_logits, before.edge_logits)
    assert torch.equal(after.delta, before.delta)  # model A's deltas do not read the edge logits
    assert int(head.min_nodes) == 5  # the smallest size it was fitted on; smaller graphs keep the trunk's logits
    (small,) = fixed_set(4, 4, 4, prior, seed=2)
    with torch.no_grad():
        headless = net.context(small).edge_logits
        net.pair_head = None
        assert torch.equal(headless, net.context(small).edge_logits)
    net.pair_head = head
    save_pfn(net, tmp_path / "pfn.pt", {})
    loaded = load_pfn(tmp_path / "pfn.pt")
    with torch.no_grad():
        assert torch.equal(loaded.context(batch).edge_logits, after.edge_logits)
    # refitting ignores the head the net has: the same seed gives the same head
    again = fit_pair_head(net, [prior], hidden=8, sizes=(5, 8), graphs=16, epochs=2, seed=3)
    assert torch.equal(again.mix, head.mix)


def test_the_head_applies_block_by_block_as_pair_by_pair() -> None:
    head = PairHead(4)
    head.norm.fit(torch.randn(500, head.norm.knots.shape[0]))
    pair = torch.randn(2, 70, 70, head.norm.knots.shape[0])  # more than one block per graph
    with torch.no_grad():
        one_by_one = head.pair_logits(pair.reshape(-1, pair.shape[-1])).view(pair.shape[:3])
        assert torch.allclose(head.head_logits(pair), one_by_one, atol=1e-6)


def test_logistic_mix_recovers_known_coefficients_within_their_standard_errors() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 2, generator=generator, dtype=torch.float64)
    truth = torch.tensor([1.5, -0.5, 0.3], dtype=torch.float64)
    labels = torch.bernoulli(torch.sigmoid(x @ truth[:2] + truth[2]), generator=generator)
    w = logistic_mix(x, labels).double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)  # [N, 3]
    p = torch.sigmoid(design @ w)
    se = torch.linalg.inv(design.T @ (design * (p * (1 - p))[:, None])).diagonal().sqrt()  # Fisher information
    assert ((w - truth).abs() < 4 * se).all(), (w, truth, se)


def test_fit_script_stores_the_head_and_its_held_out_check_in_the_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "pfn.pt"
    save_pfn(tiny_net(), ckpt, {})
    repo = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(repo / "scripts" / "fit_pair_head.py"), "--checkpoint", str(ckpt), "--graphs", "16"]
    command += ["--sizes", "5", "8", "--hidden", "8", "--epochs", "1", "--override", "data.prior.num_obs=[40,80]"]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    loaded = load_pfn(ckpt)
    assert loaded.pair_head is not None and bool(loaded.pair_head.norm.fitted)
    check = json.loads((tmp_path / "pfn.json").read_text())["pair_head"]["held_out_prior_auroc"]["prior"]
    assert set(check) == {"5", "8"} and all(0.0 <= v["with_head"] <= 1.0 for v in check.values())
