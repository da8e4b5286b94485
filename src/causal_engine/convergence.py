"""Fit to convergence and say so: early stopping on the held-out loss, best weights restored, a ceiling.

A user-data fit stops when its held-out loss has not improved for `patience` epochs (Lightning's
`EarlyStopping`) and ends with the weights of its best held-out epoch (`BestWeights`, in memory, so the
many small fits of a bootstrap or a fold loop write no files). The epoch ceiling is only a safety net,
sized from the data: a table of N rows in batches of B takes ceil(N / B) optimiser steps per epoch, so
`max_steps` optimiser steps is ceil(max_steps / ceil(N / B)) epochs (never fewer than `min_epochs`).
A fixed epoch count would under-train a small table and over-train a large one.

A fit converged when its best held-out epoch came more than `patience` epochs before the ceiling: the
stopping rule saw `patience` epochs without improvement. Otherwise the report's `warning` names the
config key to raise. Usage (any LightningModule that logs `monitor` in its validation loop):

    convergence = Convergence(patience=150, config_key="task.convergence")
    callbacks = convergence.callbacks()
    trainer = L.Trainer(max_epochs=convergence.ceiling(n_train, batch_size), callbacks=callbacks, ...)
    trainer.fit(module, datamodule=datamodule)
    report = convergence.report(callbacks, trainer.current_epoch)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from causal_engine.errors import UserError


class BestWeights(Callback):
    """Keeps a copy of the module's weights at its best `monitor` value and restores them when fitting ends
    (with `restore=False` it only records the best epoch and value)."""

    def __init__(self, monitor: str = "val/loss", mode: str = "min", restore: bool = True) -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.restore = restore
        self.best_score = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1  # 0-based; -1 until a validation epoch has logged `monitor`
        self.state: dict[str, torch.Tensor] | None = None

    def _better(self, score: float) -> bool:
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        score = float(value)
        if math.isfinite(score) and self._better(score):
            self.best_score, self.best_epoch = score, trainer.current_epoch
            if self.restore:
                self.state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.restore and self.state is not None:
            pl_module.load_state_dict(self.state)


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
    warning: str | None = None

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """`{prefix}/converged` (1.0 or 0.0), `{prefix}/epochs`, `{prefix}/best_epoch`, `{prefix}/best_val_loss`."""
        return {
            f"{prefix}/converged": float(self.converged),
            f"{prefix}/epochs": float(self.epochs),
            f"{prefix}/best_epoch": float(self.best_epoch),
            f"{prefix}/best_val_loss": self.best_val_loss,
        }

    def summary(self) -> str:
        """One console line."""
        state = "converged" if self.converged else "NOT converged"
        return (
            f"{state}: {self.epochs} of at most {self.max_epochs} epochs, best held-out loss "
            f"{self.best_val_loss:.4g} at epoch {self.best_epoch + 1} (patience {self.patience})"
        )


class Convergence:
    """The stopping rule of a user-data fit (a config is this constructor call).

    Args:
        patience: epochs without improvement of the held-out loss before stopping. Long by default: on
            tables of a few hundred rows the held-out loss is noisy and flattens before the interventional
            answers settle (`scripts/bench_query.py` measures defaults against a 10x budget).
        max_steps: optimiser steps the epoch ceiling allows (the safety net, sized from the data).
        min_epochs: the ceiling is never below this (tiny tables still get a few epochs of patience).
        max_epochs: a fixed ceiling instead of the one sized from the data (null = sized from the data).
        min_delta: an improvement smaller than this does not reset the patience.
        monitor: the held-out metric the module logs in its validation loop.
        restore_best: end with the best held-out epoch's weights (false: the last epoch's, e.g. for a
            fixed-budget reference fit).
        config_key: where this object sits in the config, so warnings name the exact key to raise.
    """

    def __init__(
        self,
        patience: int = 150,
        max_steps: int = 20_000,
        min_epochs: int = 50,
        max_epochs: int | None = None,
        min_delta: float = 0.0,
        monitor: str = "val/loss",
        restore_best: bool = True,
        config_key: str = "task.convergence",
    ) -> None:
        for name, value, low in (("patience", patience, 1), ("max_steps", max_steps, 1), ("min_epochs", min_epochs, 1)):
            if value < low:
                raise UserError(f"{config_key}.{name} must be >= {low}, got {value}")
        self.patience = patience
        self.max_steps = max_steps
        self.min_epochs = min_epochs
        self.max_epochs = max_epochs
        self.min_delta = min_delta
        self.monitor = monitor
        self.restore_best = restore_best
        self.config_key = config_key

    def ceiling(self, n_train: int, batch_size: int) -> int:
        """The epoch ceiling for `n_train` rows in batches of `batch_size`."""
        if self.max_epochs is not None:
            # Checked here, not in __init__: Hydra would wrap a constructor's error in its own exception.
            if self.max_epochs <= self.patience:
                raise UserError(
                    f"{self.config_key}.max_epochs={self.max_epochs} leaves no room for the stopping rule: it must "
                    f"exceed {self.config_key}.patience={self.patience} (or be null to size it from the data)"
                )
            return self.max_epochs
        steps_per_epoch = math.ceil(n_train / max(1, min(batch_size, n_train)))
        return max(self.min_epochs, self.patience + 1, math.ceil(self.max_steps / steps_per_epoch))

    def callbacks(self) -> list[Callback]:
        """Fresh callbacks for one fit: early stopping on `monitor` and the in-memory best weights."""
        return [
            EarlyStopping(self.monitor, patience=self.patience, min_delta=self.min_delta, mode="min", verbose=False),
            BestWeights(self.monitor, mode="min", restore=self.restore_best),
        ]

    def report(self, callbacks: Sequence[Callback], epochs: int, max_epochs: int) -> ConvergenceReport:
        """The report of a fit that used `callbacks` (from `callbacks()`), ran `epochs` epochs (1-based
        count) and had the ceiling `max_epochs`."""
        best = next(c for c in callbacks if isinstance(c, BestWeights))
        # The rule saw `patience` epochs without improvement before the ceiling.
        converged = best.best_epoch >= 0 and max_epochs - (best.best_epoch + 1) >= self.patience
        warning = None
        if not converged:
            knob = (
                f"{self.config_key}.max_epochs (now {self.max_epochs})"
                if self.max_epochs is not None
                else f"{self.config_key}.max_steps (now {self.max_steps}, a ceiling of {max_epochs} epochs)"
            )
            warning = (
                f"the fit did not converge: its held-out loss was still improving at epoch {best.best_epoch + 1} "
                f"of a ceiling of {max_epochs}; the answers may be off. Raise {knob}."
            )
        return ConvergenceReport(
            converged=converged,
            epochs=epochs,
            best_epoch=best.best_epoch,
            best_val_loss=best.best_score,
            max_epochs=max_epochs,
            patience=self.patience,
            warning=warning,
        )
