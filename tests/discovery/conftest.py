"""Small batches from the real SCM prior, mixing two graph sizes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from causal_engine.discovery.batch import DiscoveryBatch, collate
from causal_engine.discovery.data import sample_graphs
from causal_engine.scm.prior import SeedPrior

SMALL_PRIOR = SeedPrior(num_obs=40, num_int_per_regime=10, num_queries=2, intervention_values=(2.0, 4.0))


def small_batch(sizes: tuple[int, ...] = (5, 8), graphs: int = 2, seed: int = 0) -> DiscoveryBatch:
    generator = torch.Generator().manual_seed(seed)
    return collate([sample_graphs(graphs, d, SMALL_PRIOR, generator) for d in sizes])


@pytest.fixture
def mixed_batch() -> DiscoveryBatch:
    """Two 5-node and two 8-node graphs, padded to 8 nodes."""
    return small_batch()


def no_regimes(batch: DiscoveryBatch) -> DiscoveryBatch:
    """The same batch with every interventional regime removed (observational data only)."""
    return replace(
        batch,
        interventional=batch.interventional[:, :0],
        int_sample_mask=batch.int_sample_mask[:, :0],
        regime_targets=batch.regime_targets[:, :0],
        regime_values=batch.regime_values[:, :0],
        regime_mask=batch.regime_mask[:, :0],
    )
