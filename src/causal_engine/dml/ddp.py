"""The fold loop under DDP: split inference across ranks and gather the results back by row index.

Under `trainer=ddp` every rank runs the same fold loop (same seeded plan, same inner splits) and the
fits synchronise gradients. Inference after a fit (embedding every row with the fold's JEPA, predicting
the held-out fold with its nuisances) is split the way `DistributedSampler` splits a dataset, which pads
the last shard by repeating rows so every rank gets the same count. The shards therefore come back with
duplicates and in rank-interleaved order; `merge_by_index` removes the padding, checks that every
requested row arrived exactly once and restores the requested order, so all ranks hold identical,
complete arrays. Outside a process group every function here degrades to the one-process case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(global rank, world size) of this process; (0, 1) outside an initialised process group.

    Lightning creates the group at the first DDP fit, so code before that runs as one process on every rank.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather(obj: T) -> list[T]:
    """`obj` from every rank, in rank order (`[obj]` outside DDP). Any picklable object; CPU/gloo safe."""
    world = rank_and_world()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (no-op outside DDP): rank 0's files are complete once all ranks pass it."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def shard(rows: np.ndarray, rank: int, world: int) -> np.ndarray:
    """The rows rank `rank` of `world` handles, split exactly as `DistributedSampler` (no shuffle) splits them.

    Padding repeats leading rows so each rank gets ceil(n / world) of them.
    """
    rows = np.asarray(rows)
    positions = list(DistributedSampler(range(len(rows)), num_replicas=world, rank=rank, shuffle=False))
    return rows[np.asarray(positions, dtype=np.int64)]  # [ceil(n / world)]


def merge_by_index(parts: Sequence[tuple[np.ndarray, np.ndarray]], rows: np.ndarray) -> np.ndarray:
    """Values for `rows`, in that order, from per-rank `(index [n_r], values [n_r, ...])` shards.

    Repeated indices are sampler padding and are kept once. Raises when a requested row is missing, an
    unrequested one appears, or there are more repeats than padding can explain (< one per rank): any of
    those would put a wrong or partial array into the score.
    """
    rows = np.asarray(rows)
    if len(np.unique(rows)) != len(rows):
        raise ValueError("merge_by_index: the requested rows must be distinct")
    index = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in parts])  # [sum n_r]
    values = np.concatenate([np.asarray(v) for _, v in parts])  # [sum n_r, ...]
    if len(index) != len(values):
        raise ValueError(f"merge_by_index: {len(index)} indices but {len(values)} values")
    unique, first = np.unique(index, return_index=True)
    missing, extra = np.setdiff1d(rows, unique), np.setdiff1d(unique, rows)
    if missing.size or extra.size:
        raise RuntimeError(
            f"gather by index: {missing.size} requested row(s) missing (e.g. {missing[:5]}), "
            f"{extra.size} unrequested row(s) present (e.g. {extra[:5]})"
        )
    repeats = len(index) - len(unique)
    if repeats >= max(len(parts), 1):
        raise RuntimeError(
            f"gather by index: {repeats} repeated rows from {len(parts)} shard(s); padding is < 1 per shard"
        )
    return values[first[np.searchsorted(unique, rows)]]


def gather_by_index(rows: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`compute(rows)` with the work split across DDP ranks; every rank gets the full result in `rows` order.

    `compute` maps an index array [m] to values [m, ...] for those rows; each rank calls it on its shard.
    """
    rank, world = rank_and_world()
    if world == 1:
        return np.asarray(compute(np.asarray(rows)))
    mine = shard(rows, rank, world)
    return merge_by_index(all_gather((mine, np.asarray(compute(mine)))), rows)


def from_rank_zero(compute: Callable[[], T]) -> T:
    """`compute()` run on rank 0 only, its result sent to every rank (plain `compute()` outside DDP).

    For single-process work (a library learner's fit) that every rank needs but only one should do."""
    if rank_and_world()[1] == 1:
        return compute()
    box = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_identical(arrays: Sequence[np.ndarray], what: str) -> None:
    """Raise on every rank when the ranks' copies of `arrays` differ (their results would depend on the rank)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    digests = all_gather(digest.hexdigest())
    if len(set(digests)) > 1:
        raise RuntimeError(f"{what} differ between DDP ranks: {digests}")
