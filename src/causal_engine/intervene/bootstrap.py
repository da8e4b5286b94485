"""Bootstrap intervals for `task=query`: R refits of the structural model on resampled rows, trained at once.

Seeded restarts alone spread only the optimisation noise and under-cover; an interval must also carry the
sampling noise of the rows. Each replicate r refits the network on the training rows weighted by
Poisson(1) counts w_r (the Poisson bootstrap: a resample with replacement, up to the total count) and
answers with the table's rows weighted by the same counts as reference rows. The point fit's validation
rows are not fitted by any replicate either (they stay the held-out rows that set the training budget).

Each replicate is fitted the way the point fit is, stopping on held-out rows it never saw: its out-of-bag
rows (observational rows with count 0, about e⁻¹ of them, plus the point fit's validation rows), where its
own held-out loss picks the epoch whose weights it keeps (among those at the final learning rate). A
replicate trained for a fixed epoch count instead would carry the point fit's stopping point rather than
its own, and spread too little.

The R networks are fitted together: their parameters are stacked and one `torch.func.vmap` evaluates
every replicate's weighted loss on each batch, so R refits of a small per-node network cost about one
fit's optimiser steps, not R times them. Adam's updates are elementwise, so the stacked replicates train
independently; the learning-rate schedule (`convergence.PlateauSchedule`) is shared and follows the mean
out-of-bag loss.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.data import DataLoader, TensorDataset

from causal_engine.convergence import Convergence
from causal_engine.intervene.losses import intervention_loss


def poisson_counts(replicates: int, n_rows: int, seed: int) -> Tensor:
    """Resampling counts [R, N] ~ Poisson(1), seeded (the Poisson bootstrap's weights)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.ones(replicates, n_rows), generator=generator)


class _FitTerms(nn.Module):
    """`net.fit_terms` as `forward`, so `functional_call` can evaluate it with a replicate's parameters."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, cut: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.net.fit_terms(x, cut)


class BootstrapEnsemble(L.LightningModule):
    """R structural networks with stacked parameters, replicate r fitted on the rows weighted by `counts[r]`.

    Args:
        nets: R freshly initialised networks of one architecture, scaler already set (they share it).
        optimizer: partial torch optimizer (the model's), applied to the stacked parameters.
        x_train, cut_train: the training rows [N, D] and their intervened entries [N, D] bool.
        counts: resampling counts [R, N] of the training rows.
        x_held, cut_held: rows to score the replicates on [M, D] (the table's rows) and their intervened entries.
        held_out: weights [R, M] of those rows in each replicate's held-out loss (1 = out of its bag).
        batch_size: rows per optimiser step.
    """

    def __init__(
        self,
        nets: Sequence[nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        x_train: Tensor,
        cut_train: Tensor,
        counts: Tensor,
        x_held: Tensor,
        cut_held: Tensor,
        held_out: Tensor,
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        if len(nets) != len(counts):
            raise ValueError(f"{len(nets)} networks for {len(counts)} rows of counts")
        # The template holds the architecture and the shared buffers (scaler, graph); its own parameters are
        # never trained or read: every call substitutes a replicate's.
        self.template = _FitTerms(copy.deepcopy(nets[0]))
        params, _ = stack_module_state([_FitTerms(net) for net in nets])
        self.param_names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[name].detach().clone()) for name in self.param_names])
        self.optimizer_factory = optimizer
        self.train_set = TensorDataset(x_train, cut_train, torch.arange(len(x_train)))
        self.register_buffer("counts", counts.to(x_train.dtype))  # [R, N]
        self.held_set = TensorDataset(x_held, cut_held, held_out.T.to(x_held.dtype))  # weights stored [M, R]
        self.batch_size = batch_size
        # Each replicate's best held-out loss and the parameters it had then (restored when fitting ends).
        self.register_buffer("best_loss", torch.full((len(nets),), torch.inf))  # [R]
        self.best: list[Tensor] = []
        self.phase_lr: float | None = None

    @property
    def replicates(self) -> int:
        return len(self.counts)

    def _losses(self, x: Tensor, cut: Tensor, weight: Tensor) -> Tensor:
        """Each replicate's intervention loss [R] on a batch, its rows weighted by `weight` [R, B]."""
        params = dict(zip(self.param_names, self.stacked, strict=True))

        def one(p: dict[str, Tensor], w: Tensor) -> Tensor:
            pred, target, cut_k = functional_call(self.template, p, (x, cut))
            return intervention_loss(pred, target, cut_k, w)

        return vmap(one)(params, weight)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, cut, rows = batch
        loss = self._losses(x, cut, self.counts[:, rows]).sum()  # replicates are independent: sum their losses
        self.log("train/loss", loss / self.replicates, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        # One batch holds every held-out row, so each replicate's loss is its exact weighted mean.
        x, cut, weight = batch
        losses = self._losses(x, cut, weight.T).detach()  # [R]
        self.log("val/loss", losses.mean(), batch_size=len(x))
        if self.trainer.sanity_checking:
            return
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        if lr != self.phase_lr:  # a new learning-rate phase starts a new search (see `BestWeights(per_phase=)`)
            self.phase_lr = lr
            self.best_loss.fill_(torch.inf)
        better = losses < self.best_loss  # [R]
        self.best_loss = torch.where(better, losses, self.best_loss)
        for kept, param in zip(self.best, self.stacked, strict=True):
            kept[better] = param.detach()[better]

    def on_fit_start(self) -> None:
        self.best = [param.detach().clone() for param in self.stacked]

    def on_fit_end(self) -> None:
        with torch.no_grad():
            for kept, param in zip(self.best, self.stacked, strict=True):
                param.copy_(kept)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(params=self.stacked.parameters())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=min(self.batch_size, len(self.train_set)), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.held_set, batch_size=len(self.held_set))

    def replicate(self, r: int) -> nn.Module:
        """Replicate r as a stand-alone network (a copy of the template with its parameters), in eval mode."""
        wrapped = copy.deepcopy(self.template)
        state = {name: param[r].detach() for name, param in zip(self.param_names, self.stacked, strict=True)}
        wrapped.load_state_dict(state, strict=False)
        return wrapped.net.eval()


def fit_ensemble(ensemble: BootstrapEnsemble, convergence: Convergence, **trainer_kwargs: object) -> int:
    """Fit the ensemble by `convergence`'s schedule and ceiling with a lean Trainer (no logger, checkpoint or
    progress bar), each replicate ending with its best out-of-bag weights; returns the epochs run."""
    trainer = L.Trainer(
        max_epochs=convergence.ceiling(len(ensemble.train_set), ensemble.batch_size),
        callbacks=[convergence.schedule()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    trainer.fit(ensemble)
    return trainer.current_epoch
