"""V-JEPA as a LightningModule: predict the EMA target encoder's features of masked tubes from the context.

The target encoder is a frozen deep copy of the context encoder, updated after every optimiser step by
an exponential moving average whose momentum ramps linearly from `ema[0]` to `ema[1]` over training.
The loss is L1 between the predictor's output and normalised target features at the masked positions:
layer-normalised per token as in V-JEPA (`target_norm="token"`), or standardised per feature over the
batch's tokens (`"batch"`), which weighs the few tokens that carry objects above a plain background.
The representation used downstream (`embed`) is the target encoder's output pooled over space per time
step: mean, std and max (`pool="frames_max"`, [T' · 3 · rep_dim], the default), mean and std
(`pool="frames_std"`, [T' · 2 · rep_dim]), the mean only (`pool="frames"`, [T' · rep_dim]), or the mean
over all tokens (`pool="mean"`, [rep_dim]). Per-time-step pooling keeps motion linearly readable; the
spatial std keeps brightness and size, which a mean over mostly-background tokens dilutes; the max keeps
the object apart from a distractor that a mean and std add to it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from causal_engine.jepa.masks import TubeMaskCollator
from causal_engine.jepa.models import Predictor, VideoEncoder, gather_tokens
from causal_engine.metrics import linear_probe_r2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target ← momentum · target + (1 - momentum) · online, parameter by parameter (in place)."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def momentum_at(step: int, total_steps: int, start: float, end: float) -> float:
    """Linear EMA-momentum ramp from `start` (step 0) to `end` (step `total_steps`)."""
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return start + (end - start) * frac


def normalise_targets(h: torch.Tensor, how: str) -> torch.Tensor:
    """Target features [B, N, D] → the regression targets of the JEPA loss, per `how`:

    token  layer norm of each token's features (V-JEPA): every token weighs the same in the loss, background or not.
    batch  each feature standardised over all B·N tokens of the batch: a token weighs as much as it stands out, so
           a scene of mostly plain background puts the loss where the objects are.
    """
    if how == "token":
        return F.layer_norm(h, h.shape[-1:])
    if how == "batch":
        flat = h.flatten(0, 1)  # [B·N, D]
        return (h - flat.mean(0)) / flat.std(0).clamp_min(1e-6)
    raise ValueError(f"model.target_norm={how!r} must be one of {', '.join(TARGET_NORMS)}")


def soft_argmax(
    per_frame: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, grid_hw: Sequence[int], temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each feature fires in each frame: per_frame [B, T', H'W', D] (tokens in row-major (h, w) order, with
    their spatial mean and std [B, T', D]) → expected x and y in [-1, 1], each [B, T', D].

    Each feature is standardised over the frame's tokens before the softmax, so the temperature is in units of
    that feature's own spatial spread and the weights do not depend on the feature's scale. The coordinates of a
    feature that does not single out a place are noise, which the nuisance networks learn to ignore."""
    gh, gw = grid_hw
    z = (per_frame - mean[:, :, None]) / (std[:, :, None] + 1e-6)  # [B, T', H'W', D]
    w = torch.softmax(z / temperature, dim=2)  # [B, T', H'W', D]
    ys, xs = torch.meshgrid(
        torch.linspace(-1.0, 1.0, gh, device=z.device, dtype=z.dtype),
        torch.linspace(-1.0, 1.0, gw, device=z.device, dtype=z.dtype),
        indexing="ij",
    )  # each [H', W']
    x = (w * xs.reshape(1, 1, -1, 1)).sum(dim=2)  # [B, T', D]
    y = (w * ys.reshape(1, 1, -1, 1)).sum(dim=2)
    return x, y


TARGET_NORMS = ("token", "batch")
POOLS = ("frames_xy", "frames_max", "frames_std", "frames", "mean")
# Encoders whose pooled tokens make the representation (`embed_from`), concatenated in this order.
ENCODERS = ("target", "online")


class JEPAModule(L.LightningModule):
    """Self-supervised spatiotemporal world model; `rep_dim` is the width of its representation."""

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        in_channels: int = 1,
        tubelet: Sequence[int] = (2, 2, 2),
        rep_dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        pred_dim: int = 32,
        pred_depth: int = 2,
        ema: Sequence[float] = (0.9, 1.0),
        n_blocks: int = 4,
        block_scale: Sequence[float] = (0.2, 0.3),
        mask_seed: int = 0,
        pool: str = "frames_xy",
        embed_from: Sequence[str] = ("target",),
        target_norm: str = "token",
        xy_temperature: float = 0.5,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"model.pool={pool!r} must be one of {', '.join(POOLS)}")
        if not embed_from or any(e not in ENCODERS for e in embed_from) or len(set(embed_from)) < len(embed_from):
            choices = ", ".join(ENCODERS)
            raise ValueError(f"model.embed_from={list(embed_from)} must list distinct encoders of: {choices}")
        if not xy_temperature > 0:
            raise ValueError(f"model.xy_temperature={xy_temperature} must be > 0 (the soft-argmax's temperature)")
        if target_norm not in TARGET_NORMS:
            raise ValueError(f"model.target_norm={target_norm!r} must be one of {', '.join(TARGET_NORMS)}")
        # Hydra partials (optimizer, scheduler) stay out of hparams: checkpoints must load with
        # torch.load(weights_only=True), which rejects them.
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])
        self.optimizer, self.scheduler = optimizer, scheduler
        self.encoder = VideoEncoder(in_channels, tubelet, rep_dim, depth, heads)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = Predictor(rep_dim, pred_dim, pred_depth, heads)
        self.momentum = float(ema[0])
        self._probe: dict[str, list[torch.Tensor]] = {"z": [], "u": []}

    def mask_collator(self) -> TubeMaskCollator:
        """The collate function that draws this model's tube masks (DataModules call it)."""
        return TubeMaskCollator(
            self.encoder.tubelet,
            seed=self.hparams.mask_seed,
            n_blocks=self.hparams.n_blocks,
            block_scale=self.hparams.block_scale,
        )

    # --- the JEPA objective, as short named pieces -------------------------------------------------
    def forward_target(self, video: torch.Tensor, pred_idx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.target_encoder(video)  # [B, N, D]
            h = normalise_targets(h, self.hparams.target_norm)
            return gather_tokens(h, pred_idx)  # [B, Np, D]

    def forward_context(self, video: torch.Tensor, ctx_idx: torch.Tensor, pred_idx: torch.Tensor) -> torch.Tensor:
        z = self.encoder(video, keep=ctx_idx)  # [B, Nc, D]
        return self.predictor(z, ctx_idx, pred_idx, self.encoder.grid(video.shape))  # [B, Np, D]

    def _step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        video, ctx_idx, pred_idx = batch["video"], batch["mask_ctx"], batch["mask_pred"]
        return F.l1_loss(self.forward_context(video, ctx_idx, pred_idx), self.forward_target(video, pred_idx))

    # --- Lightning hooks ---------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ema_momentum", self.momentum)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # After the optimiser step: move the target towards the context encoder, then advance the ramp.
        ema_update(self.target_encoder, self.encoder, self.momentum)
        start, end = self.hparams.ema
        self.momentum = momentum_at(self.global_step, int(self.trainer.estimated_stepping_batches), start, end)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._step(batch), prog_bar=True, sync_dist=True)
        z = self.represent(batch["video"])  # [B, D']
        self._probe["z"].append(z)
        if "confounders" in batch:
            self._probe["u"].append(batch["confounders"])

    def on_validation_epoch_end(self) -> None:
        z = torch.cat(self._probe["z"]) if self._probe["z"] else None
        if z is not None and len(z) > 1:
            # Collapse monitor: a collapsed encoder maps every video to the same point (std → 0).
            std = z.std(dim=0)  # [D]
            self.log("val/emb_std", std.mean(), sync_dist=True)
            self.log("val/emb_std_min", std.min(), sync_dist=True)
        if self._probe["u"] and z is not None and len(z) >= 8:
            # Linear probe of the true confounders (simulation only): fit on one half, score the other.
            u = torch.cat(self._probe["u"]).double().cpu().numpy()
            zz = z.double().cpu().numpy()
            half = len(zz) // 2
            r2 = linear_probe_r2(zz[:half], u[:half], zz[half:], u[half:], ridge=0.1)
            self.log("val/probe_r2", r2, sync_dist=True)
        self._probe = {"z": [], "u": []}

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("test/loss", self._step(batch), sync_dist=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer(params=params)
        if self.scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler(optimizer=optimizer), "interval": "step"},
        }

    # --- the representation ------------------------------------------------------------------------
    def pool(self, tokens: torch.Tensor, video_shape: Sequence[int], how: str | None = None) -> torch.Tensor:
        """[B, N, D] → per time step over space: mean, std, max and the soft-argmax (x, y) of each feature
        ([B, T' · 5D], `frames_xy`), mean, std and max ([B, T' · 3D], `frames_max`), mean and std
        ([B, T' · 2D], `frames_std`) or the mean ([B, T' · D], `frames`); or the mean over all tokens ([B, D]).
        `how` defaults to the configured `pool` (diagnostics compare the others on the same tokens).

        The spatial std keeps what a mean over mostly-background tokens dilutes: how far the few object
        tokens stand out (brightness, size) and, frame by frame, where they are (motion). The max keeps the
        strongest response of each feature apart from the rest of the scene, where a mean or std adds the
        object and a distractor together. The max says how strongly a feature fires, not where: the soft-argmax
        (the spatial keypoints of Finn et al. 2016, "Deep spatial autoencoders") reads the position off the
        token grid, which a linear readout of the other statistics recovers only approximately.
        """
        how = self.hparams.pool if how is None else how
        if how not in POOLS:
            raise ValueError(f"pool {how!r} must be one of {', '.join(POOLS)}")
        if how == "mean":
            return tokens.mean(dim=1)
        gt, gh, gw = self.encoder.grid(video_shape)
        per_frame = tokens.reshape(tokens.shape[0], gt, -1, tokens.shape[-1])  # [B, T', H'W', D]
        mean = per_frame.mean(dim=2)  # [B, T', D]
        stats = [mean]
        if how != "frames":
            std = per_frame.std(dim=2, correction=0)  # [B, T', D]
            stats.append(std)
        if how in ("frames_max", "frames_xy"):
            stats.append(per_frame.amax(dim=2))
        if how == "frames_xy":
            stats.extend(soft_argmax(per_frame, mean, std, (gh, gw), self.hparams.xy_temperature))
        return torch.cat(stats, dim=-1).flatten(1)

    def represent(self, video: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] → the pooled tokens of each encoder in `embed_from`, concatenated: [B, D'].

        The target (EMA) encoder alone is V-JEPA's choice and the default. Adding the online (context) encoder,
        a later and noisier snapshot of the same network, is a two-member ensemble at no extra training cost; on
        the simulated benchmark it did not lower the bias (docs/jepa_dml.md, "Fifth pass")."""
        nets = {"target": self.target_encoder, "online": self.encoder}
        return torch.cat([self.pool(nets[e](video), video.shape) for e in self.hparams.embed_from], dim=1)

    @torch.no_grad()
    def embed(self, videos: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Representations [N, D'] float32, as the model computes them, of videos [N, C, T, H, W] (`represent`, in
        inference mode)."""
        was_training = self.training
        self.eval()
        out = []
        for i in range(0, len(videos), batch_size):
            chunk = videos[i : i + batch_size].to(self.device)  # [b, C, T, H, W]
            out.append(self.represent(chunk).cpu())
        self.train(was_training)
        return torch.cat(out).float().numpy()
