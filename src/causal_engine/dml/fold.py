"""One cross-fitting fold: represent → fit nuisances → predict held-out, on the fold's training rows only.

Each step is a plain function so that scripts and tests can run a fold, or one step of it, exactly as the
loop does (`fold_seed` and `inner_split` fix which rows and which random stream each model gets). Every fit
is an ordinary Lightning fit from `causal_engine.train.build_trainer`, logged under `rep{r}/fold{k}/<model>/`.
Under DDP every rank runs the same steps; inference is split across ranks and gathered back by row index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from causal_engine.dml.data import CausalSample, SampleRows
from causal_engine.dml.ddp import all_gather, gather_by_index
from causal_engine.dml.disk import DiskVideos
from causal_engine.dml.folds import Fold
from causal_engine.metrics import linear_probe_r2
from causal_engine.train import build_trainer, collect_metrics


@dataclass
class FoldRecord:
    """What one fold's models were trained on and how well they predict its held-out rows."""

    fold: Fold
    trained_rows: dict[str, np.ndarray]  # model name → rows its DataLoaders (train + val) iterated over
    outcome_mse: float  # held-out factual MSE (outcome units)
    propensity_bce: float  # held-out binary cross-entropy
    probe_r2: float | None = None  # held-out linear-probe R² of the true confounders (simulation only)
    jepa_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Representation:
    """Every row's features for one fold, and what fitting them taught (empty for covariates)."""

    features: torch.Tensor  # [N, p]
    trained_rows: dict[str, np.ndarray]
    probe_r2: float | None = None
    jepa_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Nuisances:
    """A fold's fitted outcome and propensity models with the standardisation of their inputs and outcome."""

    models: dict[str, L.LightningModule]  # "outcome" (TarNet), "propensity"
    x: torch.Tensor  # [N, p] features standardised with training-fold statistics
    y_mu: torch.Tensor
    y_sd: torch.Tensor
    trained_rows: dict[str, np.ndarray]


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


def load_best_weights(trainer: L.Trainer, module: L.LightningModule) -> None:
    """Load the best validation checkpoint into `module` when one was written (model selection on the
    inner validation rows, which belong to the training folds). Checkpoints are data: tensors and plain
    values only, no unpickled code."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    if path and Path(path).is_file():
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])


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


def fit_nuisances(
    cfg: DictConfig,
    sample: CausalSample,
    features: torch.Tensor,
    fold: Fold,
    fit_rows: np.ndarray,
    val_rows: np.ndarray,
    tag: str,
) -> Nuisances:
    """The outcome (TarNet) and propensity networks (`cfg.dml.nuisance`) fit on `fit_rows`, selected on
    `val_rows`; features and outcome are standardised with training-fold statistics only."""
    dml = cfg.dml
    mu, sd = features[fold.train].mean(0), features[fold.train].std(0).clamp_min(1e-6)
    x = (features - mu) / sd  # [N, p]
    y_raw = torch.tensor(sample.outcome, dtype=torch.float32)
    y_mu, y_sd = y_raw[fold.train].mean(), y_raw[fold.train].std().clamp_min(1e-6)
    y = (y_raw - y_mu) / y_sd
    t = torch.tensor(sample.treatment, dtype=torch.float32)

    models, trained = {}, {}
    for name in ("outcome", "propensity"):
        module = instantiate(dml.nuisance[name], in_dim=int(x.shape[1]))
        trainer = build_trainer(cfg, subdir=f"{tag}/{name}", max_epochs=dml.nuisance_epochs)
        trainer.fit(
            module,
            _loader(FeatureRows(x, t, y, fit_rows), dml.nuisance_batch_size, shuffle=True),
            _loader(FeatureRows(x, t, y, val_rows), dml.nuisance_batch_size, shuffle=False),
        )
        trained[name] = trained_rows(trainer)
        load_best_weights(trainer, module)
        models[name] = module
    return Nuisances(models, x, y_mu, y_sd, trained)


def check_no_leak(tag: str, trained: dict[str, np.ndarray], fold: Fold) -> None:
    """Refuse a fold whose models saw any of its held-out rows (a bug, not a user error: the estimate would be
    invalid)."""
    for name, rows in trained.items():
        leaked = np.intersect1d(rows, fold.test)
        if leaked.size:
            raise RuntimeError(f"{tag}: the {name} model saw {leaked.size} held-out row(s), e.g. {leaked[:5]}")


def predict_held_out(nuisances: Nuisances, fold: Fold) -> dict[str, np.ndarray]:
    """Out-of-fold g0, g1 (outcome units) and m on the fold's held-out rows, each [n_test] in fold.test order."""

    def predict(rows: np.ndarray) -> np.ndarray:
        """(g0, g1, m) for `rows` of the held-out fold: [m, 3]."""
        xr = nuisances.x[torch.as_tensor(rows)]
        mu_hat = nuisances.models["outcome"].predict(xr) * nuisances.y_sd + nuisances.y_mu  # [m, 2]
        return torch.cat([mu_hat, nuisances.models["propensity"].predict(xr)[:, None]], 1).double().numpy()

    # Under DDP each rank predicts a shard of the held-out fold; all ranks get every row, in fold.test order.
    g0, g1, m_hat = gather_by_index(fold.test, predict).T
    return {"g0": g0, "g1": g1, "m": m_hat}


def held_out_losses(sample: CausalSample, fold: Fold, preds: dict[str, np.ndarray]) -> tuple[float, float]:
    """Held-out factual outcome MSE and propensity binary cross-entropy of a fold's predictions."""
    d_test, y_test = sample.treatment[fold.test], sample.outcome[fold.test]
    factual = np.where(d_test == 1, preds["g1"], preds["g0"])
    m_safe = np.clip(preds["m"], 1e-7, 1 - 1e-7)
    mse = float(np.mean((y_test - factual) ** 2))
    bce = float(-np.mean(d_test * np.log(m_safe) + (1 - d_test) * np.log(1 - m_safe)))
    return mse, bce


def fit_fold(cfg: DictConfig, sample: CausalSample, fold: Fold, seed: int) -> tuple[dict[str, np.ndarray], FoldRecord]:
    """One fold's models (JEPA for videos, then outcome and propensity) on its training rows only, and their
    out-of-fold predictions (g0, g1, m) on its held-out rows."""
    tag = f"rep{fold.rep}/fold{fold.k}"
    L.seed_everything(seed, workers=True, verbose=False)
    fit_rows, val_rows = inner_split(fold, seed, cfg.dml.val_fraction)
    rep = represent(cfg, sample, fold, fit_rows, val_rows, seed, tag)
    nuisances = fit_nuisances(cfg, sample, rep.features, fold, fit_rows, val_rows, tag)
    trained = {**rep.trained_rows, **nuisances.trained_rows}
    check_no_leak(tag, trained, fold)
    preds = predict_held_out(nuisances, fold)
    mse, bce = held_out_losses(sample, fold, preds)
    return preds, FoldRecord(fold, trained, mse, bce, rep.probe_r2, rep.jepa_metrics)
