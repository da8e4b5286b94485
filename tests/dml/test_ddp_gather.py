"""Gathering out-of-fold results by row index, as the fold loop does under DDP, checked without processes.

Each simulated rank takes its `shard` (DistributedSampler's split, padded) of the rows and computes values
for it; `merge_by_index` must drop the padding, restore the requested order and refuse incomplete input.
The subprocess runs with two real gloo ranks are in tests/test_ddp.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from causal_engine.dml.ddp import gather_by_index, merge_by_index, shard
from causal_engine.dml.fold import FeatureRows, loader_rows


def _value(rows: np.ndarray) -> np.ndarray:
    """A distinct, recognisable value per row: [m, 2]."""
    return np.column_stack([rows * 10.0, -rows + 0.5])


@pytest.mark.parametrize(("n", "world"), [(7, 2), (10, 3), (2, 3), (8, 2)])
def test_merge_by_index_drops_padding_and_restores_order(n, world):
    rows = np.random.default_rng(n).permutation(np.arange(100, 100 + 3 * n, 3))  # unsorted, non-contiguous
    shards = [shard(rows, r, world) for r in range(world)]
    assert {len(s) for s in shards} == {-(-n // world)}  # every rank gets ceil(n / world) rows
    padding = world * -(-n // world) - n
    assert sum(len(s) for s in shards) - n == padding  # the split really repeats `padding` rows
    merged = merge_by_index([(s, _value(s)) for s in shards], rows)
    np.testing.assert_array_equal(merged, _value(rows))


def test_merge_by_index_refuses_a_missing_row():
    rows = np.arange(6)
    parts = [(shard(rows, r, 2), _value(shard(rows, r, 2))) for r in range(2)]
    parts[1] = (parts[1][0][:-1], parts[1][1][:-1])  # rank 1 lost its last row (row 5)
    with pytest.raises(RuntimeError, match=r"1 requested row\(s\) missing \(e.g. \[5\]\)"):
        merge_by_index(parts, rows)


def test_merge_by_index_refuses_a_row_outside_the_fold():
    rows = np.array([1, 4, 6])
    parts = [(np.array([1, 4]), _value(np.array([1, 4]))), (np.array([6, 9]), _value(np.array([6, 9])))]
    with pytest.raises(RuntimeError, match=r"1 unrequested row\(s\) present \(e.g. \[9\]\)"):
        merge_by_index(parts, rows)


def test_merge_by_index_refuses_more_repeats_than_padding():
    rows = np.arange(4)
    parts = [(rows, _value(rows)), (rows, _value(rows))]  # both ranks did all the work: 4 repeats, 2 ranks
    with pytest.raises(RuntimeError, match="4 repeated rows from 2 shard"):
        merge_by_index(parts, rows)


def test_gather_by_index_outside_ddp_is_the_plain_computation():
    rows = np.array([5, 2, 9])
    np.testing.assert_array_equal(gather_by_index(rows, _value), _value(rows))


def test_leak_check_rows_are_the_rank_shards_and_unite_to_the_dataset():
    """Under DDP Lightning hands each rank a DistributedSampler; the leak check must read that shard."""
    fit_rows = np.array([0, 2, 3, 5, 8, 9, 11])
    x, t, y = torch.zeros(12, 1), torch.zeros(12), torch.zeros(12)
    dataset = FeatureRows(x, t, y, fit_rows)
    per_rank = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=3)
        per_rank.append(loader_rows(DataLoader(dataset, batch_size=4, sampler=sampler)))
    assert all(len(rows) == 4 and np.isin(rows, fit_rows).all() for rows in per_rank)
    assert not np.array_equal(np.sort(per_rank[0]), np.sort(per_rank[1]))  # a shard each, not the dataset
    np.testing.assert_array_equal(np.unique(np.concatenate(per_rank)), fit_rows)
    np.testing.assert_array_equal(loader_rows(DataLoader(dataset, batch_size=4, shuffle=True)), fit_rows)
