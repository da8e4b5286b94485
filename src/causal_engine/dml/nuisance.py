"""DML nuisance networks: a TarNet outcome model (shared trunk, one head per arm), a propensity model, and a
plain regression (the PLR score's E[Y|X] and E[D|X]).

All take a fixed feature vector per row (JEPA embeddings or a user's covariates), already
standardised by the cross-fitting loop with training-fold statistics. The outcome is standardised the
same way, so one learning rate suits any outcome scale (kilograms or pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: int, depth: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """`depth` hidden ELU layers of width `hidden`, then a linear map to `out_dim`."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ELU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(hidden if depth else in_dim, out_dim))
    return nn.Sequential(*layers)


class TarNet(nn.Module):
    """Shalit et al. (2017): a shared representation Φ(x) and one outcome head per arm."""

    def __init__(
        self, in_dim: int, hidden: int = 64, depth: int = 2, head_hidden: int = 32, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(mlp(in_dim, hidden, depth - 1, hidden, dropout), nn.ELU())
        self.heads = nn.ModuleList([mlp(hidden, head_hidden, 1, 1, dropout) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] → potential outcomes [B, 2] (column 0: control, 1: treated)."""
        phi = self.trunk(x)  # [B, hidden]
        return torch.cat([head(phi) for head in self.heads], dim=1)


class _NuisanceModule(L.LightningModule):
    """Shared optimiser wiring; batches are (x [B, p], t [B], y [B])."""

    def __init__(self, optimizer: Callable[..., torch.optim.Optimizer]) -> None:
        super().__init__()
        self.optimizer_factory = optimizer

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self.log("test/loss", self.loss(batch), sync_dist=True)

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(params=self.parameters())


class OutcomeModule(_NuisanceModule):
    """E[Y | X, T=t] for both arms; trained by MSE on the factual head only."""

    def __init__(
        self,
        in_dim: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        hidden: int = 64,
        depth: int = 2,
        head_hidden: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(optimizer)
        self.save_hyperparameters(logger=False, ignore=["optimizer"])
        self.net = TarNet(in_dim, hidden, depth, head_hidden, dropout)

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, t, y = batch
        factual = self.net(x).gather(1, t.long()[:, None]).squeeze(1)  # [B]
        return F.mse_loss(factual, y)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Potential-outcome predictions [N, 2]."""
        self.eval()
        return self.net(x.to(self.device)).cpu()


class _ScalarModule(_NuisanceModule):
    """One MLP output per row; a subclass says what it is fitted to (`loss`) and how the output reads (`link`)."""

    def __init__(
        self,
        in_dim: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        hidden: int = 64,
        depth: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(optimizer)
        self.save_hyperparameters(logger=False, ignore=["optimizer"])
        self.net = mlp(in_dim, hidden, depth, 1, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] → the raw output [B]."""
        return self.net(x).squeeze(1)

    def link(self, output: torch.Tensor) -> torch.Tensor:
        return output

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions [N] through `link`."""
        self.eval()
        return self.link(self(x.to(self.device))).cpu()


class PropensityModule(_ScalarModule):
    """P(T=1 | X): an MLP classifier trained by binary cross-entropy; predicts propensities [N]."""

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, t, _ = batch
        return F.binary_cross_entropy_with_logits(self(x), t)

    def link(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)


class RegressionModule(_ScalarModule):
    """E[target | X] by MSE: the PLR score's E[Y|X], and E[D|X] of a continuous treatment; predicts in standardised
    units. Batches carry the standardised target in the outcome slot (x, t, target)."""

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, _, target = batch
        return F.mse_loss(self(x), target)
