"""The V-JEPA networks: a tubelet transformer encoder and a narrow predictor with mask tokens.

Positions are fixed 3-D sine-cosine embeddings computed from the token grid at run time, so one
model accepts any (T, H, W) divisible by the tubelet; only the channel count is fixed at construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sine-cosine embedding [len(positions), dim] (dim even) of integer positions."""
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32) / max(dim // 2, 1))  # [dim/2]
    angles = positions.float()[:, None] * freqs[None]  # [P, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_3d(dim: int, grid: Sequence[int]) -> torch.Tensor:
    """Fixed position embedding [T'H'W', dim] for a (T', H', W') grid flattened in (t, h, w) order.

    Each axis gets an even share of the channels; leftover channels (dim not divisible by 6) are zero.
    """
    per_axis = (dim // 3) // 2 * 2
    gt, gh, gw = grid
    t, h, w = torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")
    parts = [sincos_1d(per_axis, axis.flatten()) for axis in (t, h, w)]  # 3 × [N, per_axis]
    emb = torch.cat(parts, dim=1)
    return nn.functional.pad(emb, (0, dim - emb.shape[1]))  # [N, dim]


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Select tokens per sample: x [B, N, D], idx [B, K] → [B, K, D]."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def _transformer(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim,
        heads,
        dim_feedforward=int(dim * mlp_ratio),
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class VideoEncoder(nn.Module):
    """Tubelet embedding (a strided Conv3d) + pre-norm transformer over the kept tokens."""

    def __init__(
        self,
        in_channels: int = 1,
        tubelet: Sequence[int] = (2, 2, 2),
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        self.tubelet = tuple(int(t) for t in tubelet)
        self.dim = dim
        self.patch = nn.Conv3d(in_channels, dim, kernel_size=self.tubelet, stride=self.tubelet)
        self.blocks = _transformer(dim, depth, heads, mlp_ratio)
        self.norm = nn.LayerNorm(dim)

    def grid(self, video_shape: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a video [.., T, H, W]; each axis must divide by the tubelet."""
        t, h, w = video_shape[-3:]
        if t % self.tubelet[0] or h % self.tubelet[1] or w % self.tubelet[2]:
            raise ValueError(
                f"video (T, H, W) = {(t, h, w)} is not divisible by the tubelet {self.tubelet}; choose "
                f"data.dims or model.tubelet so that each axis divides evenly"
            )
        return t // self.tubelet[0], h // self.tubelet[1], w // self.tubelet[2]

    def tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Embedded tokens with positions, before the transformer: [B, C, T, H, W] → [B, N, D]."""
        grid = self.grid(video.shape)
        x = self.patch(video).flatten(2).transpose(1, 2)  # [B, N, D]
        return x + sincos_3d(self.dim, grid).to(x)[None]

    def forward(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C, T, H, W] (and optional kept indices [B, K]) → token features [B, N or K, D]."""
        x = self.tokens(video)
        if keep is not None:
            x = gather_tokens(x, keep)
        return self.norm(self.blocks(x))


class Predictor(nn.Module):
    """Narrow transformer: context features + mask tokens at target positions → predicted target features."""

    def __init__(
        self, dim: int = 64, pred_dim: int = 32, depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0
    ) -> None:
        super().__init__()
        self.pred_dim = pred_dim
        self.embed = nn.Linear(dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.blocks = _transformer(pred_dim, depth, heads, mlp_ratio)
        self.norm = nn.LayerNorm(pred_dim)
        self.out = nn.Linear(pred_dim, dim)

    def forward(
        self, ctx: torch.Tensor, ctx_idx: torch.Tensor, pred_idx: torch.Tensor, grid: Sequence[int]
    ) -> torch.Tensor:
        """ctx [B, Nc, D] at ctx_idx [B, Nc]; predict the features at pred_idx [B, Np] → [B, Np, D]."""
        pos = sincos_3d(self.pred_dim, grid).to(ctx)[None].expand(ctx.shape[0], -1, -1)  # [B, N, Dp]
        x = self.embed(ctx) + gather_tokens(pos, ctx_idx)  # [B, Nc, Dp]
        m = self.mask_token + gather_tokens(pos, pred_idx)  # [B, Np, Dp]
        h = self.blocks(torch.cat([x, m], dim=1))  # [B, Nc + Np, Dp]
        return self.out(self.norm(h[:, ctx.shape[1] :]))
