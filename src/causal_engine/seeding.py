"""Layered seeds: one top-level seed, a distinct random stream per DDP rank, DataLoader worker and offset.

Data generated on the fly (the SCM prior, masks drawn in a collate function) must not repeat across
processes: two ranks drawing the same graphs would silently halve the effective batch. Every such
stream is derived here, in one place, from the run's seed.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.data import get_worker_info

# Large odd multipliers keep (seed, rank, worker, offsets) tuples from colliding for realistic ranges.
_MIX = (1_000_003, 7_919, 104_729, 15_485_863)


def process_rank() -> int:
    """Global rank of this process (0 outside distributed runs)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("GLOBAL_RANK", "0")))


def worker_id() -> int:
    """Index of the current DataLoader worker, -1 in the main process."""
    info = get_worker_info()
    return -1 if info is None else info.id


def stream_seed(seed: int, *offsets: int) -> int:
    """A seed unique to (seed, rank, worker, *offsets), stable across runs."""
    parts = (process_rank(), worker_id() + 1, *offsets)
    mixed = int(seed)
    for i, part in enumerate(parts):
        mixed = mixed * _MIX[i % len(_MIX)] + int(part) + 1
    return mixed % (2**63 - 1)


def stream_generator(seed: int, *offsets: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator whose stream differs per DDP rank, DataLoader worker and extra offsets (e.g. fold)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(stream_seed(seed, *offsets))
    return generator
