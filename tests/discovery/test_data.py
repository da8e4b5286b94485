"""The PFN DataModule: mixed sizes with masks, curriculum, observational-only graphs, seeded fixed sets."""

from __future__ import annotations

from dataclasses import replace
from itertools import islice
from unittest import mock

import pytest
import torch

from causal_engine.discovery.data import PFNDataModule, PriorStream, curriculum_range
from causal_engine.errors import UserError

from .conftest import SMALL_PRIOR


def stream(**kw) -> PriorStream:
    args = {
        "prior": SMALL_PRIOR,
        "batch_size": 4,
        "size_groups": 2,
        "node_range": (6, 9),
        "curriculum_start": (6, 9),
        "curriculum_batches": 1,
        "seed": 3,
    }
    return PriorStream(**{**args, **kw})


def test_batches_mix_sizes_with_masks() -> None:
    for batch in islice(iter(stream()), 4):
        sizes = batch.node_mask.sum(1)
        assert batch.num_graphs == 4 and batch.num_nodes == int(sizes.max())
        assert ((sizes >= 6) & (sizes <= 9)).all()
        # Padding nodes carry no data and no edges.
        pad = ~batch.node_mask
        assert (batch.observational.abs().sum(1)[pad] == 0).all()
        assert (batch.adjacency.sum(2)[pad] == 0).all() and (batch.adjacency.sum(1)[pad] == 0).all()


def test_curriculum_widens_linearly() -> None:
    assert curriculum_range(0, (5, 10), (10, 30), 100) == (5, 10)
    assert curriculum_range(50, (5, 10), (10, 30), 100) == (8, 20)
    assert curriculum_range(10_000, (5, 10), (10, 30), 100) == (10, 30)


def test_observational_only_share_hides_regimes() -> None:
    batches = list(islice(iter(stream(prior=replace(SMALL_PRIOR, obs_only_share=0.5), batch_size=8)), 8))
    hidden = torch.cat([~b.regime_mask.any(1) for b in batches]).float().mean().item()
    # 64 graphs, p = 0.5: SE = 0.0625; 4 SE tolerance.
    assert abs(hidden - 0.5) < 0.25
    assert all(b.regime_mask.shape[1] > 0 for b in batches)


def test_workers_and_ranks_draw_different_graphs() -> None:
    first = next(iter(stream()))
    again = next(iter(stream()))
    assert torch.equal(first.observational, again.observational)  # same seed, same process: same stream
    with mock.patch("causal_engine.seeding.worker_id", return_value=1):
        other_worker = next(iter(stream()))
    with mock.patch("causal_engine.seeding.process_rank", return_value=1):
        other_rank = next(iter(stream()))
    for other in (other_worker, other_rank):
        assert other.observational.shape != first.observational.shape or not torch.equal(
            other.observational, first.observational
        )


def test_fixed_sets_are_seeded_and_named() -> None:
    kw = {
        "prior": SMALL_PRIOR,
        "val_graphs": 3,
        "test_graphs": 2,
        "eval_batch_size": 2,
        "test_sets": {"er_d6": {"num_nodes": 6}, "sf_d7": {"num_nodes": 7, "graph": "sf"}},
    }
    a, b = PFNDataModule(seed=1, eval_seed=None, **kw), PFNDataModule(seed=1, eval_seed=None, **kw)
    a.setup("fit"), a.setup("test"), b.setup("fit"), b.setup("test")
    assert [x.num_graphs for x in a.val_batches] == [2, 1]
    assert torch.equal(a.val_batches[0].observational, b.val_batches[0].observational)
    assert a.test_names == ["er_d6", "sf_d7"]
    assert [len(dl) for dl in a.test_dataloader()] == [1, 1]
    assert next(iter(a.test_dataloader()[1])).num_nodes == 7
    c = PFNDataModule(seed=2, eval_seed=None, **kw)  # sets drawn from the run's seed
    c.setup("fit")
    assert not torch.equal(a.val_batches[0].observational, c.val_batches[0].observational)
    fixed = [PFNDataModule(seed=s, **kw) for s in (1, 2)]  # the default: the same sets for any seed
    for m in fixed:
        m.setup("fit"), m.setup("test")
    assert torch.equal(fixed[0].val_batches[0].observational, fixed[1].val_batches[0].observational)
    assert torch.equal(fixed[0].test_batches["sf_d7"][0].adjacency, fixed[1].test_batches["sf_d7"][0].adjacency)


def test_a_test_set_picked_alone_keeps_its_graphs() -> None:
    """`task=compare` and the benchmarks pick sets by name; a set's graphs follow its place in the configured
    test_sets, not its place in the pick (else `--sets a b` and `--sets b` would score b on other graphs)."""
    kw = {
        "prior": SMALL_PRIOR,
        "test_graphs": 2,
        "eval_batch_size": 2,
        "test_sets": {"er_d6": {"num_nodes": 6}, "sf_d7": {"num_nodes": 7, "graph": "sf"}},
    }
    every, alone = PFNDataModule(**kw), PFNDataModule(**kw)
    every.setup("test")
    alone.select_test_sets(["sf_d7"])
    alone.setup("test")
    assert alone.test_names == ["sf_d7"]
    assert torch.equal(alone.test_batches["sf_d7"][0].observational, every.test_batches["sf_d7"][0].observational)
    with pytest.raises(UserError, match=r"task.sets: unknown test set\(s\) \['er_d9'\]"):
        alone.select_test_sets(["er_d9"], "task.sets")
