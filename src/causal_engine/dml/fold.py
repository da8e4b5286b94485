"""One cross-fitting fold: represent → fit nuisances → predict held-out, on the fold's training rows only.

Each step is a plain function so that scripts and tests can run a fold, or one step of it, exactly as the
loop does (`fold_seed` and `inner_split` fix which rows and which random stream each model gets). Every
network fit is an ordinary Lightning fit from `causal_engine.train.build_trainer`, logged under
`rep{r}/fold{k}/<model>/`; the nuisance networks stop on their held-out loss (`dml.convergence`), the JEPA
keeps its epoch budget (its EMA target moves, so its loss is no stopping signal). Library learners
(`dml.learner=tabular`, `causal_engine.dml.learners`) fit in one process. Under DDP every rank runs the same
steps; network inference is split across ranks and gathered back by row index, library fits run on rank 0
and are broadcast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from causal_engine.convergence import Convergence, ConvergenceReport
from causal_engine.dml.data import CausalSample, SampleRows
from causal_engine.dml.ddp import all_gather, from_rank_zero, gather_by_index
from causal_engine.dml.disk import DiskVideos
from causal_engine.dml.folds import Fold
from causal_engine.dml.learners import fit_tabular, resolve_learner
from causal_engine.metrics import linear_probe_r2
from causal_engine.train import build_trainer, collect_metrics

log = logging.getLogger(__name__)


@dataclass
class FoldRecord:
    """What one fold's models were trained on, how well they predict its held-out rows, and how they ended."""

    fold: Fold
    trained_rows: dict[str, np.ndarray]  # model name → rows its fit received (train + inner validation)
    outcome_mse: float  # held-out MSE of the outcome model (factual for ate/att, E[Y|X] for plr; outcome units)
    propensity_bce: float | None  # held-out binary cross-entropy of P(D=1|X) (None for a continuous treatment)
    probe_r2: float | None = None  # held-out linear-probe R² of the true confounders (simulation only)
    jepa_metrics: dict[str, float] = field(default_factory=dict)
    treatment_mse: float | None = None  # held-out MSE of E[D|X] for a continuous treatment
    convergence: dict[str, float] = field(default_factory=dict)  # "<network>/converged", ".../epochs", ...


@dataclass
class Representation:
    """Every row's features for one fold, and what fitting them taught (empty for covariates)."""

    features: torch.Tensor  # [N, p]
    trained_rows: dict[str, np.ndarray]
    probe_r2: float | None = None
    jepa_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Nuisances:
    """A fold's held-out nuisance predictions, the rows each model's fit received, and the networks' reports."""

    predictions: dict[str, np.ndarray]  # g0, g1, m (ate/att) or ell, m (plr), each [n_test] in fold.test order
    trained_rows: dict[str, np.ndarray]
    convergence: dict[str, float] = field(default_factory=dict)


class FeatureRows(Dataset):
    """(x, t, y) rows of fixed features, restricted to global `rows`."""

    def __init__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, rows: np.ndarray) -> None:
        self.x, self.t, self.y, self.rows = x, t, y, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = int(self.rows[i])
        return self.x[r], self.t[r], self.y[r]


def _loader(dataset: Dataset, batch_size: int, *, shuffle: bool, collate_fn: Any = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_fn)


def fold_seed(seed: int, fold: Fold, k_folds: int) -> int:
    """The seed of one fold's models: the run's seed + fold, offset by repetition."""
    return int(seed) + fold.rep * k_folds + fold.k


def inner_split(fold: Fold, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training rows once more: (`fit` rows that train, `val` rows that select checkpoints).
    Held-out rows never enter either."""
    perm = np.random.default_rng(seed).permutation(fold.train)
    n_val = max(1, round(val_fraction * len(perm)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def loader_rows(loader: DataLoader) -> np.ndarray:
    """Global rows this process's copy of `loader` iterates: under DDP the shard that Lightning's
    DistributedSampler hands this rank (it yields positions in the dataset), otherwise every row."""
    rows = np.asarray(loader.dataset.rows)
    if isinstance(loader.sampler, DistributedSampler):
        rows = rows[np.fromiter(iter(loader.sampler), dtype=np.int64)]
    return rows


def trained_rows(trainer: L.Trainer) -> np.ndarray:
    """Rows the trainer fit and validated on, read back from Lightning's own DataLoaders and united over
    DDP ranks, so every rank runs the leak check on the same set (and raises together, never hangs)."""
    val = trainer.val_dataloaders
    loaders = [trainer.train_dataloader, *(val if isinstance(val, list | tuple) else [val])]
    local = np.unique(np.concatenate([loader_rows(dl) for dl in loaders if dl is not None]))
    return np.unique(np.concatenate(all_gather(local)))


def fit_jepa(
    cfg: DictConfig, sample: CausalSample, fit_rows: np.ndarray, val_rows: np.ndarray, seed: int, subdir: str
) -> tuple[L.LightningModule, L.Trainer]:
    """A fresh JEPA (`cfg.model`) fit on `fit_rows` of the videos for `dml.jepa_epochs`, `val_rows` validating.

    Built with plain containers (`_convert_="all"`) so that its checkpoints hold plain hyperparameters and
    load with `weights_only=True`."""
    jepa = instantiate(cfg.model, in_channels=int(sample.features.shape[1]), mask_seed=seed, _convert_="all")
    collate = jepa.mask_collator()
    trainer = build_trainer(cfg, subdir=subdir, max_epochs=cfg.dml.jepa_epochs)
    batch = cfg.dml.jepa_batch_size
    trainer.fit(
        jepa,
        _loader(SampleRows(sample, fit_rows), batch, shuffle=True, collate_fn=collate),
        _loader(SampleRows(sample, val_rows), batch, shuffle=False, collate_fn=collate),
    )
    return jepa, trainer


def embed_rows(
    jepa: L.LightningModule, videos: torch.Tensor | DiskVideos, rows: np.ndarray, batch_size: int
) -> np.ndarray:
    """Representations [len(rows), D'] of `rows` of the videos, read and embedded one batch at a time into one
    array (the videos may live on disk; indexing all rows at once would copy every video into memory)."""
    out: np.ndarray | None = None
    for start in range(0, len(rows), batch_size):
        z = jepa.embed(videos[torch.as_tensor(rows[start : start + batch_size])], batch_size)  # [b, D']
        if out is None:
            out = np.empty((len(rows), z.shape[1]), dtype=z.dtype)
        out[start : start + len(z)] = z
    return out


def represent(
    cfg: DictConfig, sample: CausalSample, fold: Fold, fit_rows: np.ndarray, val_rows: np.ndarray, seed: int, tag: str
) -> Representation:
    """Every row's features for this fold: a JEPA fit on the fold's training rows embeds videos; covariates are
    their own features."""
    if not sample.is_video:
        return Representation(sample.features.float(), {})
    jepa, trainer = fit_jepa(cfg, sample, fit_rows, val_rows, seed, f"{tag}/jepa")
    jepa_metrics = {k: v for k, v in collect_metrics(trainer).items() if k.startswith(("val/", "train/"))}
    # [N, D'] every row, inference only; under DDP each rank embeds a shard and all ranks get every row. Batches
    # of the training batch size: what fits in memory for training fits for inference.
    batch = cfg.dml.jepa_batch_size
    features = torch.from_numpy(
        gather_by_index(np.arange(len(sample)), lambda rows: embed_rows(jepa, sample.features, rows, batch))
    ).float()
    probe = None
    if sample.confounders is not None:
        probe = linear_probe_r2(
            features[fold.train].double().numpy(),
            sample.confounders[fold.train],
            features[fold.test].double().numpy(),
            sample.confounders[fold.test],
        )
    return Representation(features, {"jepa": trained_rows(trainer)}, probe, jepa_metrics)


def fit_network(
    cfg: DictConfig,
    spec: DictConfig,
    rows: FeatureRows,
    val: FeatureRows,
    subdir: str,
) -> tuple[L.LightningModule, np.ndarray, ConvergenceReport]:
    """One nuisance network (`spec`) fit on `rows` until its loss on `val` stops improving (`dml.convergence`:
    patience, best weights restored, an epoch ceiling sized from the data)."""
    convergence: Convergence = instantiate(cfg.dml.convergence)
    callbacks = convergence.callbacks()
    batch = cfg.dml.nuisance_batch_size
    max_epochs = convergence.ceiling(len(rows), batch)
    module = instantiate(spec, in_dim=int(rows.x.shape[1]))
    trainer = build_trainer(cfg, subdir=subdir, extra_callbacks=callbacks, max_epochs=max_epochs)
    trainer.fit(module, _loader(rows, batch, shuffle=True), _loader(val, batch, shuffle=False))
    report = convergence.report(callbacks, trainer.current_epoch, max_epochs)
    if report.warning:
        log.warning("%s: %s", subdir, report.warning)
    return module, trained_rows(trainer), report


def _standardise(values: torch.Tensor, train: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(values - mean) / sd with the training rows' statistics; returns the standardised values, mean and sd."""
    mu, sd = values[train].mean(0), values[train].std(0).clamp_min(1e-6)
    return (values - mu) / sd, mu, sd


def fit_networks(
    cfg: DictConfig,
    sample: CausalSample,
    features: torch.Tensor,
    fold: Fold,
    fit_rows: np.ndarray,
    val_rows: np.ndarray,
    tag: str,
) -> Nuisances:
    """The neural nuisances (`cfg.dml.nuisance`) fit on `fit_rows`, stopped on `val_rows`, predicting the held-out
    rows; features, outcome (and a continuous treatment) are standardised with training-fold statistics only.

    ate/att: the TarNet outcome model (g0, g1) and the propensity classifier (m). plr: regressions of Y (ell)
    and of D (m; the propensity classifier for a binary treatment)."""
    nuisance = cfg.dml.nuisance
    x, _, _ = _standardise(features, fold.train)  # [N, p]
    y, y_mu, y_sd = _standardise(torch.tensor(sample.outcome, dtype=torch.float32), fold.train)  # [N]
    y_mu, y_sd = float(y_mu), float(y_sd)
    t = torch.tensor(sample.treatment, dtype=torch.float32)  # [N]
    binary = sample.binary_treatment
    if cfg.dml.score == "plr":
        d_std, d_mu, d_sd = _standardise(t, fold.train)
        d_mu, d_sd = float(d_mu), float(d_sd)
        # (name, constructor, regression target in the outcome slot, map of predictions [m] back to units)
        specs = [("outcome", nuisance.regression, y, lambda p: {"ell": p * y_sd + y_mu})]
        if binary:
            specs.append(("propensity", nuisance.propensity, y, lambda p: {"m": p}))
        else:
            specs.append(("treatment", nuisance.regression, d_std, lambda p: {"m": p * d_sd + d_mu}))
    else:
        specs = [
            ("outcome", nuisance.outcome, y, lambda p: {"g0": p[:, 0] * y_sd + y_mu, "g1": p[:, 1] * y_sd + y_mu}),
            ("propensity", nuisance.propensity, y, lambda p: {"m": p}),
        ]
    predictions, trained, convergence = {}, {}, {}
    for name, spec, target, to_units in specs:
        module, trained[name], report = fit_network(
            cfg, spec, FeatureRows(x, t, target, fit_rows), FeatureRows(x, t, target, val_rows), f"{tag}/{name}"
        )
        convergence.update(report.as_metrics(name))

        def predict(rows: np.ndarray, module: L.LightningModule = module) -> np.ndarray:
            out = module.predict(x[torch.as_tensor(rows)])  # [m] or [m, 2]
            return out.double().numpy()

        # Under DDP each rank predicts a shard of the held-out fold; all ranks get every row, in fold.test order.
        predictions.update(to_units(gather_by_index(fold.test, predict)))
    return Nuisances(predictions, trained, convergence)


def fit_library(cfg: DictConfig, sample: CausalSample, features: torch.Tensor, fold: Fold, seed: int) -> Nuisances:
    """The tabular nuisances (`cfg.dml.tabular`) fit on the fold's training rows (their own internal model
    selection replaces the inner validation split). Under DDP rank 0 fits them and broadcasts its predictions
    and rows; library fits are single-process and would only repeat the same work on every rank."""

    def fit() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        x = features.double().numpy()  # [N, p]
        return fit_tabular(
            cfg.dml.tabular, cfg.dml.score, x, sample.treatment, sample.outcome, fold.train, fold.test, seed
        )

    predictions, trained = from_rank_zero(fit)
    return Nuisances(predictions, trained)


def check_no_leak(tag: str, trained: dict[str, np.ndarray], fold: Fold) -> None:
    """Refuse a fold whose models saw any of its held-out rows (a bug, not a user error: the estimate would be
    invalid)."""
    for name, rows in trained.items():
        leaked = np.intersect1d(rows, fold.test)
        if leaked.size:
            raise RuntimeError(f"{tag}: the {name} model saw {leaked.size} held-out row(s), e.g. {leaked[:5]}")


def held_out_losses(sample: CausalSample, fold: Fold, preds: dict[str, np.ndarray]) -> dict[str, float]:
    """Held-out losses of a fold's predictions: the outcome model's MSE (factual for ate/att, E[Y|X] for plr),
    and the propensity's binary cross-entropy (binary treatment) or E[D|X]'s MSE (continuous one)."""
    d_test, y_test = sample.treatment[fold.test], sample.outcome[fold.test]
    fitted = preds["ell"] if "ell" in preds else np.where(d_test == 1, preds["g1"], preds["g0"])
    losses = {"outcome_mse": float(np.mean((y_test - fitted) ** 2))}
    if sample.binary_treatment:
        m_safe = np.clip(preds["m"], 1e-7, 1 - 1e-7)
        losses["propensity_bce"] = float(-np.mean(d_test * np.log(m_safe) + (1 - d_test) * np.log(1 - m_safe)))
    else:
        losses["propensity_bce"] = None
        losses["treatment_mse"] = float(np.mean((d_test - preds["m"]) ** 2))
    return losses


def fit_fold(cfg: DictConfig, sample: CausalSample, fold: Fold, seed: int) -> tuple[dict[str, np.ndarray], FoldRecord]:
    """One fold's models (JEPA for videos, then the nuisances `dml.learner` resolves to) on its training rows only,
    and their out-of-fold predictions (g0, g1, m, or ell, m for plr) on its held-out rows."""
    tag = f"rep{fold.rep}/fold{fold.k}"
    L.seed_everything(seed, workers=True, verbose=False)
    fit_rows, val_rows = inner_split(fold, seed, cfg.dml.val_fraction)
    rep = represent(cfg, sample, fold, fit_rows, val_rows, seed, tag)
    if resolve_learner(cfg.dml.learner, sample) == "tabular":
        nuisances = fit_library(cfg, sample, rep.features, fold, seed)
    else:
        nuisances = fit_networks(cfg, sample, rep.features, fold, fit_rows, val_rows, tag)
    trained = {**rep.trained_rows, **nuisances.trained_rows}
    check_no_leak(tag, trained, fold)
    preds = nuisances.predictions
    record = FoldRecord(
        fold,
        trained,
        probe_r2=rep.probe_r2,
        jepa_metrics=rep.jepa_metrics,
        convergence=nuisances.convergence,
        **held_out_losses(sample, fold, preds),
    )
    return preds, record
