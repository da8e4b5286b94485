"""Copula features: the graph a PFN reads from a table does not depend on strictly increasing column transforms."""

from __future__ import annotations

from dataclasses import replace

import torch

from causal_engine.discovery.batch import DiscoveryBatch, from_prior
from causal_engine.discovery.encoder import context_features
from causal_engine.discovery.models import ModelA, build_net
from causal_engine.scm.prior import BroadPrior


def _transformed(batch: DiscoveryBatch, f) -> DiscoveryBatch:
    """The same batch with f applied to every sample and do-value of every column (f strictly increasing)."""
    return replace(
        batch,
        observational=f(batch.observational),
        interventional=f(batch.interventional),
        regime_values=torch.where(batch.regime_targets, f(batch.regime_values), batch.regime_values),
    )


def _table() -> DiscoveryBatch:
    """Prior tables on a 1/64 grid: distinct values stay distinct in float32 under the transforms below (a
    comparison sort then orders both copies identically, ties included)."""
    prior = BroadPrior(obs_only_share=0.0, num_obs=(200, 200), num_queries=1)
    batch = from_prior(prior.sample(4, 8, generator=torch.Generator().manual_seed(0)))
    return replace(
        batch,
        observational=(batch.observational * 64).round() / 64,
        interventional=(batch.interventional * 64).round() / 64,
        regime_values=(batch.regime_values * 64).round() / 64,
    )


def test_copula_context_features_are_exactly_invariant_to_monotone_transforms() -> None:
    batch = _table()
    lo = min(batch.observational.min(), batch.interventional.min())
    positive = _transformed(batch, lambda x: x - lo + 1.0)  # a positive copy, so log applies
    copies = [
        _transformed(positive, torch.log),
        _transformed(positive, lambda x: x**3 * 7.0 + 2.0),
        _transformed(batch, lambda x: torch.sinh(x)),
    ]
    reference = context_features(positive, 0.2, "copula")
    for copy in copies:
        got = context_features(copy, 0.2, "copula")
        torch.testing.assert_close(got.node, reference.node, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.pair, reference.pair, rtol=0, atol=1e-5)
    # z-score features are not invariant: the check above has something to catch
    z_ref, z_log = context_features(positive, 0.2, "zscore"), context_features(copies[0], 0.2, "zscore")
    assert (z_ref.pair - z_log.pair).abs().max() > 1e-2


def test_copula_net_gives_the_same_edges_and_unit_deltas_after_a_log() -> None:
    torch.manual_seed(0)
    net = ModelA(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, feature_space="copula").eval()
    batch = _table()
    lo = min(batch.observational.min(), batch.interventional.min())
    positive = _transformed(batch, lambda x: x - lo + 1.0)
    with torch.no_grad():
        a, b = net.context(positive), net.context(_transformed(positive, torch.log))
    torch.testing.assert_close(a.edge_logits, b.edge_logits, rtol=0, atol=1e-4)
    assert net.net_spec()["kwargs"]["feature_space"] == "copula"


def test_checkpoints_without_feature_space_rebuild_with_zscore_features() -> None:
    """A net_spec from before the option existed rebuilds the features it was trained on; new nets are copula."""
    spec = ModelA(d_model=16, n_heads=2).net_spec()
    assert spec["kwargs"].pop("feature_space") == "copula"
    assert build_net(spec).encoder.feature_space == "zscore"
