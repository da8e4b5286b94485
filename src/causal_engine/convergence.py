"""Fit to convergence and say so: a plateau schedule on the held-out loss, best weights restored, a ceiling.

A user-data fit watches its held-out loss. After `patience` epochs without a relative improvement of
`min_delta` it lowers the learning rate (`PlateauSchedule`); the plateau after the last of `decays` decays
stops it, and it ends with the weights of its best held-out epoch (`BestWeights`, in memory, so the many
small fits of a bootstrap or a fold loop write no files). Stopping at the first plateau would leave the
answers wherever the constant-rate iterates happened to wander (`scripts/bench_query.py` measures the
defaults against a 10x budget). The epoch ceiling is only a safety net, sized from the data: a table of N
rows in batches of B takes ceil(N / B) optimiser steps per epoch, so `max_steps` optimiser steps is
ceil(max_steps / ceil(N / B)) epochs (never fewer than `min_epochs`, nor than the rule's shortest run).
A fixed epoch count would under-train a small table and over-train a large one.

A fit converged when the stopping rule ended it; one cut by the ceiling did not, and the report's
`warning` names the config key to raise. Usage (any LightningModule that logs `monitor` in its
validation loop):

    convergence = Convergence(patience=50, decays=2, config_key="task.convergence")
    callbacks = convergence.callbacks()
    max_epochs = convergence.ceiling(n_train, batch_size)
    trainer = L.Trainer(max_epochs=max_epochs, callbacks=callbacks, ...)
    trainer.fit(module, datamodule=datamodule)
    report = convergence.report(callbacks, trainer.current_epoch, max_epochs)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from causal_engine.errors import UserError


class BestWeights(Callback):
    """Keeps a copy of the module's weights at its best `monitor` value and restores them when fitting ends
    (with `restore=False` it only records the best epoch and value).

    With `per_phase=True` the best is taken among the epochs at the current learning rate only: a change of
    the rate (a `PlateauSchedule` decay) starts a new search. The minimum of a noisy held-out loss over
    hundreds of constant-rate epochs is an optimistic draw, and restoring it would undo the settling the
    lower rates bought.
    """

    def __init__(
        self, monitor: str = "val/loss", mode: str = "min", restore: bool = True, per_phase: bool = False
    ) -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.restore = restore
        self.per_phase = per_phase
        self.best_score = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1  # 0-based; -1 until a validation epoch has logged `monitor`
        self.state: dict[str, torch.Tensor] | None = None
        self.phase_lr: float | None = None

    def _better(self, score: float) -> bool:
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        score = float(value)
        if self.per_phase:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            if lr != self.phase_lr:
                self.phase_lr, self.best_score = lr, math.inf if self.mode == "min" else -math.inf
        if math.isfinite(score) and self._better(score):
            self.best_score, self.best_epoch = score, trainer.current_epoch
            if self.restore:
                self.state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.restore and self.state is not None:
            pl_module.load_state_dict(self.state)


class PlateauSchedule(Callback):
    """Early stopping that first lowers the learning rate: after `patience` epochs in which `monitor` has not
    improved on its best by a relative `min_delta`, every optimiser's learning rate is multiplied by `factor`
    and the search for a best starts again at the new rate; the plateau after the `decays`-th decay stops the
    fit (`decays=0` is plain early stopping). With `lr` set, the fit starts at that rate instead of the
    optimiser's.

    With a constant learning rate the iterates of a small-batch fit keep wandering around the optimum, and the
    answers read from them wander with them: on a table of a few hundred rows the held-out loss sits on a
    noisy plateau while E[Y | do] moves from epoch to epoch by more than its own sampling error. Lowering the
    rate on the plateau settles the iterates (and resolves the slow improvements the noise hid) before the
    fit is allowed to stop.
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        patience: int = 150,
        decays: int = 0,
        factor: float = 0.3,
        min_delta: float = 0.0,
        lr: float | None = None,
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.decays = decays
        self.factor = factor
        self.min_delta = min_delta
        self.lr = lr
        self.best_score = math.inf
        self.wait = 0  # epochs since the last improvement or decay
        self.decayed = 0
        self.stopped = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The schedule's starting rate in place of the optimiser's; a fit resumed mid-way keeps its restored rate.
        if self.lr is not None and trainer.global_step == 0:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = self.lr

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        score = float(value)
        first = math.isinf(self.best_score)
        if math.isfinite(score) and (first or score < self.best_score - self.min_delta * abs(self.best_score)):
            self.best_score, self.wait = score, 0
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        if self.decayed < self.decays:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] *= self.factor
            # A new rate starts a new search: its plateau is judged against its own best, since an early
            # lucky draw of the noisy loss at the old rate may never be undercut.
            self.decayed, self.wait, self.best_score = self.decayed + 1, 0, math.inf
        else:
            self.stopped = trainer.should_stop = True


@dataclass(frozen=True)
class ConvergenceReport:
    """How one fit ended. `epochs` ran (1-based count) out of a ceiling of `max_epochs`; `best_epoch` is
    the 0-based epoch whose weights were kept, with held-out loss `best_val_loss`."""

    converged: bool
    epochs: int
    best_epoch: int
    best_val_loss: float
    max_epochs: int
    patience: int
    decays: int = 0
    warning: str | None = None

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """`{prefix}/converged` (1.0 or 0.0), `{prefix}/epochs`, `{prefix}/best_epoch`, `{prefix}/best_val_loss`,
        `{prefix}/lr_decays`."""
        return {
            f"{prefix}/converged": float(self.converged),
            f"{prefix}/epochs": float(self.epochs),
            f"{prefix}/best_epoch": float(self.best_epoch),
            f"{prefix}/best_val_loss": self.best_val_loss,
            f"{prefix}/lr_decays": float(self.decays),
        }

    def summary(self) -> str:
        """One console line."""
        state = "converged" if self.converged else "NOT converged"
        return (
            f"{state}: {self.epochs} of at most {self.max_epochs} epochs, best held-out loss "
            f"{self.best_val_loss:.4g} at epoch {self.best_epoch + 1} (patience {self.patience}, learning rate "
            f"lowered {self.decays} times)"
        )


class Convergence:
    """The stopping rule of a user-data fit (a config is this constructor call).

    Args:
        patience: epochs of a plateau (no relative improvement of the held-out loss by `min_delta`) before
            the learning rate is lowered, or, after `decays` decays, before the fit stops.
        decays: how many times a plateau lowers the learning rate before one stops the fit (0: plain early
            stopping at the model's learning rate, the best epoch taken over the whole fit).
        factor: what each decay multiplies the learning rate by.
        lr: the learning rate the fit starts at (null: the model's optimizer's).
        max_steps: optimiser steps the epoch ceiling allows (the safety net, sized from the data).
        min_epochs: the ceiling is never below this (tiny tables still get a few epochs of patience).
        max_epochs: a fixed ceiling instead of the one sized from the data (null = sized from the data).
        min_delta: relative improvement of the held-out loss that ends a plateau (0.001 = 0.1 %).
        monitor: the held-out metric the module logs in its validation loop.
        restore_best: end with the weights of the best held-out epoch at the final learning rate (over the
            whole fit when `decays` is 0); false: the last epoch's.
        config_key: where this object sits in the config, so warnings name the exact key to raise.
    """

    def __init__(
        self,
        patience: int = 150,
        decays: int = 0,
        factor: float = 0.3,
        lr: float | None = None,
        max_steps: int = 20_000,
        min_epochs: int = 50,
        max_epochs: int | None = None,
        min_delta: float = 0.0,
        monitor: str = "val/loss",
        restore_best: bool = True,
        config_key: str = "task.convergence",
    ) -> None:
        for name, value, low in (
            ("patience", patience, 1),
            ("decays", decays, 0),
            ("max_steps", max_steps, 1),
            ("min_epochs", min_epochs, 1),
        ):
            if value < low:
                raise UserError(f"{config_key}.{name} must be >= {low}, got {value}")
        if not 0.0 < factor < 1.0:
            raise UserError(f"{config_key}.factor must be in (0, 1), got {factor}")
        if lr is not None and not lr > 0:
            raise UserError(f"{config_key}.lr must be > 0 (or null for the model's), got {lr}")
        self.patience = patience
        self.decays = decays
        self.factor = factor
        self.lr = lr
        self.max_steps = max_steps
        self.min_epochs = min_epochs
        self.max_epochs = max_epochs
        self.min_delta = min_delta
        self.monitor = monitor
        self.restore_best = restore_best
        self.config_key = config_key

    @property
    def shortest(self) -> int:
        """The fewest epochs in which the rule can stop a fit: one plateau per decay, then the last one."""
        return (self.decays + 1) * self.patience

    def ceiling(self, n_train: int, batch_size: int) -> int:
        """The epoch ceiling for `n_train` rows in batches of `batch_size`."""
        if self.max_epochs is not None:
            # Checked here, not in __init__: Hydra would wrap a constructor's error in its own exception.
            if self.max_epochs <= self.shortest:
                raise UserError(
                    f"{self.config_key}.max_epochs={self.max_epochs} leaves no room for the stopping rule: it must "
                    f"exceed (decays + 1) x patience = {self.shortest} (or be null to size it from the data)"
                )
            return self.max_epochs
        steps_per_epoch = math.ceil(n_train / max(1, min(batch_size, n_train)))
        return max(self.min_epochs, self.shortest + 1, math.ceil(self.max_steps / steps_per_epoch))

    def schedule(self) -> PlateauSchedule:
        """A fresh learning-rate schedule and stopping rule on `monitor`."""
        return PlateauSchedule(self.monitor, self.patience, self.decays, self.factor, self.min_delta, self.lr)

    def callbacks(self) -> list[Callback]:
        """Fresh callbacks for one fit: the plateau schedule and the in-memory best weights."""
        best = BestWeights(self.monitor, mode="min", restore=self.restore_best, per_phase=self.decays > 0)
        return [self.schedule(), best]

    def report(self, callbacks: Sequence[Callback], epochs: int, max_epochs: int) -> ConvergenceReport:
        """The report of a fit that used `callbacks` (from `callbacks()`), ran `epochs` epochs (1-based
        count) and had the ceiling `max_epochs`."""
        best = next(c for c in callbacks if isinstance(c, BestWeights))
        schedule = next(c for c in callbacks if isinstance(c, PlateauSchedule))
        warning = None
        if not schedule.stopped:
            knob = (
                f"{self.config_key}.max_epochs (now {self.max_epochs})"
                if self.max_epochs is not None
                else f"{self.config_key}.max_steps (now {self.max_steps}, a ceiling of {max_epochs} epochs)"
            )
            warning = (
                f"the fit did not converge: it reached its ceiling of {max_epochs} epochs with the learning rate "
                f"lowered {schedule.decayed} of {self.decays} times (best held-out loss at epoch "
                f"{best.best_epoch + 1}); the answers may be off. Raise {knob}."
            )
        return ConvergenceReport(
            converged=schedule.stopped,
            epochs=epochs,
            best_epoch=best.best_epoch,
            best_val_loss=best.best_score,
            max_epochs=max_epochs,
            patience=self.patience,
            decays=schedule.decayed,
            warning=warning,
        )
