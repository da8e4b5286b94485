"""The Lightning wiring shared by every system: configs composed as the command line would, trainer, callbacks
and loggers from config; fit and evaluate.

Tasks that fit several models in one run (one per cross-fitting fold, say) call `build_trainer` with a
`subdir`, so each fit keeps its own TensorBoard run and checkpoints under the run directory, and prints no
model summary. Scripts and tests get their configs from `compose`, so they run exactly what `causal-engine ...`
runs. `build_trainer` also keeps the console to what a user acts on (`quiet_lightning`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from omegaconf import DictConfig, OmegaConf, open_dict

from causal_engine.errors import UserError

log = logging.getLogger(__name__)

# conf/ lives at the repository root; the package sees it through the `causal_engine/conf` link.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def compose(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """`conf/config.yaml` composed with `overrides` as `causal-engine` would, its run directory `output_dir`.

    Hydra's runtime config is set as in a run (so `${hydra:...}` resolves) and Hydra is cleared first, so
    scripts and tests may compose many configs in one process.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(Path(output_dir).parent)
    HydraConfig().set_config(cfg)
    return cfg


def _instantiate_group(node: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger); null entries are skipped."""
    if not node:
        return []
    return [instantiate(item) for item in node.values() if item is not None and "_target_" in item]


def instantiate_loggers(cfg: DictConfig) -> list[Logger]:
    """The config's loggers (`cfg.logger`), also for tasks that log figures outside a Trainer."""
    return _instantiate_group(cfg.get("logger"))


def with_output_dir(cfg: DictConfig, output_dir: str | Path) -> DictConfig:
    """A copy of `cfg` whose `paths.output_dir` (and every path interpolated from it) is `output_dir`."""
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.update(sub, "paths.output_dir", str(output_dir), force_add=True)
    return sub


# Lightning's per-fit notices: device availability, CUDA ranks, product tips and checkpoint-restore lines. A fold
# loop fits dozens of models and prints each of them every time; none is something a user acts on.
_LIGHTNING_NOTICES = (
    "GPU available",
    "TPU available",
    "HPU available",
    "💡 Tip:",
    "LOCAL_RANK:",
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
)


class _DropLightningNotices(logging.Filter):
    """Drops Lightning's per-fit notices (`_LIGHTNING_NOTICES`) below WARNING; every warning passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.getMessage().startswith(_LIGHTNING_NOTICES)


def quiet_lightning() -> None:
    """Silence Lightning's per-fit notices and one deprecation inside Lightning itself; idempotent.

    Filters sit on the loggers that emit the notices, so Lightning's warnings and everything else still show.
    The deprecation is torch's `LeafSpec` one, raised from Lightning's own `_pytree.py` on every fit: nothing
    in this project can act on it.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningNotices) for f in logger.filters):
            logger.addFilter(_DropLightningNotices())
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


class ParameterCount(Callback):
    """One line with the model's size when its fit starts (after `setup`, where some modules build their network),
    in place of Lightning's layer table (`trainer.enable_model_summary`, off by default)."""

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count = sum(p.numel() for p in pl_module.parameters())
        log.info("%s: %s parameters", type(pl_module).__name__, get_human_readable_count(count).strip())


def build_trainer(
    cfg: DictConfig, *, subdir: str | None = None, extra_callbacks: Sequence[Callback] = (), **overrides: Any
) -> L.Trainer:
    """A Trainer with the config's callbacks (plus `extra_callbacks`) and loggers; outputs under
    `paths.output_dir[/subdir]`.

    `overrides` replace trainer arguments (e.g. `max_epochs=` for a nuisance fit inside a fold loop);
    `extra_callbacks` are a task's own, e.g. `Convergence.callbacks()`. A fit in a `subdir` is one of many in
    the run, so it prints no model summary unless `overrides` ask for one.
    """
    quiet_lightning()
    if subdir is not None:
        cfg = with_output_dir(cfg, Path(cfg.paths.output_dir) / subdir)
        overrides.setdefault("enable_model_summary", False)
    callbacks: list[Callback] = [*_instantiate_group(cfg.get("callbacks")), *extra_callbacks]
    loggers = instantiate_loggers(cfg)
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


def collect_metrics(trainer: L.Trainer) -> dict[str, float]:
    """Scalar metrics the trainer holds (`callback_metrics`) as plain floats."""
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if isinstance(value, torch.Tensor | float | int) and torch.as_tensor(value).numel() == 1
    }


def register_hp_metrics(module: L.LightningModule, names: Sequence[str]) -> None:
    """Announce `hp/...` metrics to TensorBoard's HParams tab (call from `on_train_start`).

    The HParams tab shows only metrics declared together with the hyperparameters; the values are
    filled in later by `self.log("hp/...", ...)`.
    """
    for logger in module.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(module.hparams, dict.fromkeys(names, float("nan")))


def log_text(module: L.LightningModule, tag: str, text: str) -> None:
    """Add `text` (markdown) to every TensorBoard logger of `module`, at its current global step."""
    for logger in module.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(tag, text, global_step=module.global_step)


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The checkpoint callback's best model path, or None (no checkpoint callback, or nothing written)."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
        return callback.best_model_path
    return None


def fit(cfg: DictConfig, test: bool = True) -> dict[str, float]:
    """Fit `cfg.model` on `cfg.data`; then, when `test`, test the best checkpoint (in-memory weights if none).

    `ckpt_path` resumes a killed run (optimizer, epoch and step included), e.g. `ckpt_path=last` with
    `hydra.run.dir=` set to the killed run's directory.
    """
    datamodule: L.LightningDataModule = instantiate(cfg.data, _convert_="all")
    model: L.LightningModule = instantiate(cfg.model, _convert_="all")
    trainer = build_trainer(cfg, extra_callbacks=[ParameterCount()])
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = collect_metrics(trainer)
    if test and not trainer.interrupted:
        best = best_checkpoint(trainer)
        log.info("Testing %s", best or "the in-memory weights (no checkpoint was written)")
        # verbose=False: the run's closing screen lists the test metrics once (Lightning's table does not fit
        # several test sets in a terminal).
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update(collect_metrics(trainer))
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Load `ckpt_path` into `cfg.model` and run the test loop: the test metrics of a saved model."""
    ckpt = cfg.get("ckpt_path")
    if not ckpt or not Path(str(ckpt)).is_file():
        raise UserError(
            f"task=evaluate needs an existing checkpoint: ckpt_path={ckpt!r}. Give one, e.g. "
            f"ckpt_path=outputs/runs/<date>/<time>/checkpoints/last.ckpt."
        )
    datamodule: L.LightningDataModule = instantiate(cfg.data, _convert_="all")
    model: L.LightningModule = instantiate(cfg.model, _convert_="all")
    trainer = build_trainer(cfg)
    trainer.test(model, datamodule=datamodule, ckpt_path=str(ckpt), verbose=False)
    return collect_metrics(trainer)
