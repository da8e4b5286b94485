"""Tube masks for V-JEPA: spatial blocks that span every frame, drawn by a seeded generator in collate.

Masking a block in every frame (a "tube") stops the predictor from copying a patch from a
neighbouring frame, so it must model the scene. As in I-JEPA/V-JEPA, one block size is drawn per
batch and each sample gets its own block positions; index sets are truncated to the smallest count
in the batch so that they stack into rectangular tensors (a truncated patch is simply neither
context nor target).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info

from causal_engine.seeding import stream_generator


def tube_masks(
    batch_size: int,
    grid: Sequence[int],
    *,
    generator: torch.Generator,
    n_blocks: int = 2,
    block_scale: tuple[float, float] = (0.15, 0.25),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Context and target token indices for a token grid (T', H', W') flattened in (t, h, w) order.

    Returns (ctx [B, Nc], pred [B, Np]) with Nc, Np > 0; every target spatial position appears in all
    T' frames and no index is both context and target.
    """
    gt, gh, gw = (int(g) for g in grid)
    area = gh * gw
    scale = block_scale[0] + (block_scale[1] - block_scale[0]) * torch.rand(1, generator=generator).item()
    side = max(1, round(math.sqrt(scale * area)))
    bh, bw = min(side, gh - 1 if gh > 1 else 1), min(side, gw - 1 if gw > 1 else 1)
    spatial = torch.zeros(batch_size, gh, gw, dtype=torch.bool)  # [B, H', W'] True = target
    for b in range(batch_size):
        for _ in range(n_blocks):
            top = int(torch.randint(0, gh - bh + 1, (1,), generator=generator))
            left = int(torch.randint(0, gw - bw + 1, (1,), generator=generator))
            spatial[b, top : top + bh, left : left + bw] = True
    spatial = spatial.flatten(1)  # [B, H'W']
    if spatial.all(dim=1).any():  # keep at least one context position per sample
        spatial[:, 0] = False
    n_pred = int(spatial.sum(1).min())
    n_ctx = int((~spatial).sum(1).min())
    # Spatial positions, truncated per sample to the batch minimum, then expanded over all frames.
    pred_s = torch.stack([torch.nonzero(row).squeeze(1)[:n_pred] for row in spatial])  # [B, n_pred]
    ctx_s = torch.stack([torch.nonzero(~row).squeeze(1)[:n_ctx] for row in spatial])  # [B, n_ctx]
    frames = torch.arange(gt) * area  # [T']

    def tubes(pos: torch.Tensor) -> torch.Tensor:
        return (frames[None, :, None] + pos[:, None, :]).flatten(1)  # [B, T' * n]

    return tubes(ctx_s), tubes(pred_s)


class TubeMaskCollator:
    """Collate a batch and add `mask_ctx` / `mask_pred` (token indices for an encoder with this tubelet),
    drawn from a stream seeded per rank and worker.

    The generator is created lazily inside the process that collates, so each DataLoader worker and
    DDP rank draws a different, reproducible mask sequence (causal_engine.seeding.stream_generator).
    Non-persistent workers start from a fresh copy of the collator every epoch; mixing in the worker's
    per-epoch base seed (drawn by the seeded main process) keeps their masks from repeating each epoch.
    """

    def __init__(
        self, tubelet: Sequence[int], *, seed: int, n_blocks: int = 2, block_scale: Sequence[float] = (0.15, 0.25)
    ) -> None:
        self.tubelet = tuple(int(t) for t in tubelet)
        self.seed = seed
        self.n_blocks = n_blocks
        self.block_scale = (float(block_scale[0]), float(block_scale[1]))
        self._generator: torch.Generator | None = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self._generator is None:
            info = get_worker_info()
            self._generator = stream_generator(self.seed, 17, 0 if info is None else info.seed % 2**31)
        batch = default_collate(items)
        # The token grid follows from the video's (T, H, W) and the encoder's tubelet.
        grid = [size // step for size, step in zip(batch["video"].shape[-3:], self.tubelet, strict=True)]
        batch["mask_ctx"], batch["mask_pred"] = tube_masks(
            len(items), grid, generator=self._generator, n_blocks=self.n_blocks, block_scale=self.block_scale
        )
        return batch
