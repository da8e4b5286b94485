"""`task=crossfit`: K-fold cross-fitted DML with a fresh JEPA and fresh nuisances per fold.

For each repetition r and fold k: fit a JEPA on the training folds only (video data), embed every
row with it, fit the TarNet outcome and the propensity networks on the training folds' embeddings only,
and predict the held-out fold. The pooled out-of-fold predictions enter the orthogonal score
(`causal_engine.dml.scores`). Tabular data (`data=table`) skips the JEPA: the nuisances take the
covariates. Each fit is an ordinary Lightning fit logged under `rep{r}/fold{k}/<model>/`.

Under `trainer=ddp` every rank runs this same loop; fits synchronise gradients, inference is split across
ranks and gathered back by row index (`causal_engine.dml.ddp`), and only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from causal_engine.dml.data import CausalSample, DMLInputError, SampleRows, check_sample
from causal_engine.dml.ddp import all_gather, barrier, check_identical, gather_by_index, rank_and_world
from causal_engine.dml.folds import Fold, stratified_folds
from causal_engine.dml.scores import DMLResult, ScoreElements, aggregate, score_elements
from causal_engine.metrics import linear_probe_r2
from causal_engine.plots import ci_figure, log_figure, propensity_overlap_figure, save_figure
from causal_engine.tables import TableSource
from causal_engine.train import build_trainer, instantiate_loggers

log = logging.getLogger(__name__)


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
class CrossfitResult:
    """Everything one cross-fitted run produced: the estimate, the fold plan and the predictions."""

    result: DMLResult
    sample: CausalSample
    plan: list[list[Fold]]
    predictions: list[dict[str, np.ndarray]]  # per repetition: g0, g1, m, ell, each [N] out-of-fold
    records: list[FoldRecord]
    naive: float
    naive_se: float


class _Tensors(Dataset):
    """(x, t, y) rows of fixed features, restricted to global `rows`."""

    def __init__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, rows: np.ndarray) -> None:
        self.x, self.t, self.y, self.rows = x, t, y, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = int(self.rows[i])
        return self.x[r], self.t[r], self.y[r]


def load_sample(data_cfg: DictConfig) -> CausalSample:
    """The configured data as a CausalSample: anything with `sample()` (the video DataModules, shipped
    examples), or a user's table (`data=table`)."""
    data = instantiate(data_cfg)
    if hasattr(data, "sample"):
        return data.sample()
    if isinstance(data, TableSource):
        missing = [k for k in ("treatment", "outcome", "covariates") if not getattr(data, k)]
        if missing:
            raise DMLInputError(
                f"task=crossfit with data=table needs data.{', data.'.join(missing)}: e.g. "
                f"`data.treatment=qsmk data.outcome=wt82_71 data.covariates=[age,sex]`."
            )
        covariates = list(data.covariates)
        clash = {data.treatment, data.outcome} & set(covariates)
        if clash:
            raise DMLInputError(f"data.covariates must not contain the treatment or outcome ({sorted(clash)}).")
        frame = data.load([data.treatment, data.outcome, *covariates])
        return CausalSample(
            torch.tensor(frame[covariates].to_numpy(), dtype=torch.float32),
            frame[data.treatment].to_numpy(),
            frame[data.outcome].to_numpy(),
            feature_names=tuple(covariates),
        )
    raise DMLInputError(
        f"task=crossfit cannot use data of type {type(data).__name__}; use data=video_confounded, "
        f"data=video_files or data=table."
    )


def _loader(dataset: Dataset, batch_size: int, *, shuffle: bool, collate_fn: Any = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_fn)


def _loader_rows(loader: DataLoader) -> np.ndarray:
    """Global rows this process's copy of `loader` iterates: under DDP the shard that Lightning's
    DistributedSampler hands this rank (it yields positions in the dataset), otherwise every row."""
    rows = np.asarray(loader.dataset.rows)
    if isinstance(loader.sampler, DistributedSampler):
        rows = rows[np.fromiter(iter(loader.sampler), dtype=np.int64)]
    return rows


def _trained_rows(trainer: L.Trainer) -> np.ndarray:
    """Rows the trainer fit and validated on, read back from Lightning's own DataLoaders and united over
    DDP ranks, so every rank runs the leak check on the same set (and raises together, never hangs)."""
    val = trainer.val_dataloaders
    loaders = [trainer.train_dataloader, *(val if isinstance(val, list | tuple) else [val])]
    local = np.unique(np.concatenate([_loader_rows(dl) for dl in loaders if dl is not None]))
    return np.unique(np.concatenate(all_gather(local)))


def _best_weights(trainer: L.Trainer, module: L.LightningModule) -> None:
    """Load the best validation checkpoint into `module` when one was written (model selection on the
    inner validation rows, which belong to the training folds)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    if path and Path(path).is_file():
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])


def inner_split(fold: Fold, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training rows once more: (`fit` rows that train, `val` rows that select checkpoints).
    Held-out rows never enter either."""
    perm = np.random.default_rng(seed).permutation(fold.train)
    n_val = max(1, round(val_fraction * len(perm)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def fit_jepa(
    cfg: DictConfig, sample: CausalSample, fit_rows: np.ndarray, val_rows: np.ndarray, seed: int, subdir: str
) -> tuple[L.LightningModule, L.Trainer]:
    """A fresh JEPA (`cfg.model`) fit on `fit_rows` of the videos for `dml.jepa_epochs`, `val_rows` validating."""
    jepa = instantiate(cfg.model, in_channels=int(sample.features.shape[1]), mask_seed=seed)
    collate = jepa.mask_collator()
    trainer = build_trainer(cfg, subdir=subdir, max_epochs=cfg.dml.jepa_epochs)
    batch = cfg.dml.jepa_batch_size
    trainer.fit(
        jepa,
        _loader(SampleRows(sample, fit_rows), batch, shuffle=True, collate_fn=collate),
        _loader(SampleRows(sample, val_rows), batch, shuffle=False, collate_fn=collate),
    )
    return jepa, trainer


def fit_fold(cfg: DictConfig, sample: CausalSample, fold: Fold, seed: int) -> tuple[dict[str, np.ndarray], FoldRecord]:
    """One fold's models (JEPA for videos, then outcome and propensity) on its training rows only, and their
    out-of-fold predictions (g0, g1, m) on its held-out rows."""
    dml = cfg.dml
    tag = f"rep{fold.rep}/fold{fold.k}"
    L.seed_everything(seed, workers=True, verbose=False)
    fit_rows, val_rows = inner_split(fold, seed, dml.val_fraction)
    trained: dict[str, np.ndarray] = {}
    probe, jepa_metrics = None, {}

    if sample.is_video:
        jepa, trainer = fit_jepa(cfg, sample, fit_rows, val_rows, seed, f"{tag}/jepa")
        trained["jepa"] = _trained_rows(trainer)
        jepa_metrics = {k: v for k, v in _scalars(trainer).items() if k.startswith(("val/", "train/"))}
        # [N, D'] every row, inference only; under DDP each rank embeds a shard and all ranks get every row.
        features = torch.from_numpy(
            gather_by_index(np.arange(len(sample)), lambda rows: jepa.embed(sample.features[torch.as_tensor(rows)]))
        ).float()
        if sample.confounders is not None:
            probe = linear_probe_r2(
                features[fold.train].double().numpy(),
                sample.confounders[fold.train],
                features[fold.test].double().numpy(),
                sample.confounders[fold.test],
            )
    else:
        features = sample.features.float()

    # Standardise features and outcome with training-fold statistics only.
    mu, sd = features[fold.train].mean(0), features[fold.train].std(0).clamp_min(1e-6)
    x = (features - mu) / sd  # [N, p]
    y_raw = torch.tensor(sample.outcome, dtype=torch.float32)
    y_mu, y_sd = y_raw[fold.train].mean(), y_raw[fold.train].std().clamp_min(1e-6)
    y = (y_raw - y_mu) / y_sd
    t = torch.tensor(sample.treatment, dtype=torch.float32)

    models = {}
    for name in ("outcome", "propensity"):
        module = instantiate(dml.nuisance[name], in_dim=int(x.shape[1]))
        trainer = build_trainer(cfg, subdir=f"{tag}/{name}", max_epochs=dml.nuisance_epochs)
        trainer.fit(
            module,
            _loader(_Tensors(x, t, y, fit_rows), dml.nuisance_batch_size, shuffle=True),
            _loader(_Tensors(x, t, y, val_rows), dml.nuisance_batch_size, shuffle=False),
        )
        trained[name] = _trained_rows(trainer)
        _best_weights(trainer, module)
        models[name] = module

    for name, rows in trained.items():
        leaked = np.intersect1d(rows, fold.test)
        if leaked.size:  # a bug, not a user error: the estimate would be invalid
            raise RuntimeError(f"{tag}: the {name} model saw {leaked.size} held-out row(s), e.g. {leaked[:5]}")

    def predict(rows: np.ndarray) -> np.ndarray:
        """Out-of-fold (g0, g1, m) for `rows` of the held-out fold: [m, 3], outcomes in outcome units."""
        xr = x[torch.as_tensor(rows)]
        mu_hat = models["outcome"].predict(xr) * y_sd + y_mu  # [m, 2]
        return torch.cat([mu_hat, models["propensity"].predict(xr)[:, None]], 1).double().numpy()

    # Under DDP each rank predicts a shard of the held-out fold; all ranks get every row, in fold.test order.
    g0, g1, m_hat = gather_by_index(fold.test, predict).T  # each [n_test]
    d_test, y_test = sample.treatment[fold.test], sample.outcome[fold.test]
    factual = np.where(d_test == 1, g1, g0)
    m_safe = np.clip(m_hat, 1e-7, 1 - 1e-7)
    record = FoldRecord(
        fold=fold,
        trained_rows=trained,
        outcome_mse=float(np.mean((y_test - factual) ** 2)),
        propensity_bce=float(-np.mean(d_test * np.log(m_safe) + (1 - d_test) * np.log(1 - m_safe))),
        probe_r2=probe,
        jepa_metrics=jepa_metrics,
    )
    return {"g0": g0, "g1": g1, "m": m_hat}, record


def _scalars(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}


# Settings of the score and the inference only: changing them reuses the fitted folds.
_INFERENCE_KEYS = ("score", "trim", "max_clipped_share", "normalize", "level")


def fold_fingerprint(cfg: DictConfig) -> str:
    """What a saved fold depends on: data, representation model, the fitting part of `dml`, and seed."""
    fitting = {k: v for k, v in OmegaConf.to_container(cfg.dml, resolve=True).items() if k not in _INFERENCE_KEYS}
    parts = {"data": cfg.get("data"), "model": cfg.get("model"), "dml": fitting, "seed": cfg.get("seed")}
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(parts), resolve=True).encode()).hexdigest()


def _save_fold(path: Path, preds: dict[str, np.ndarray], record: FoldRecord, fingerprint: str) -> None:
    """A finished fold's out-of-fold predictions and record, written as soon as the fold completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "fingerprint": fingerprint,
        "outcome_mse": record.outcome_mse,
        "propensity_bce": record.propensity_bce,
        "probe_r2": record.probe_r2,
        "jepa_metrics": record.jepa_metrics,
    }
    trained = {f"trained_{name}": rows for name, rows in record.trained_rows.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, test=record.fold.test, meta=np.array(json.dumps(meta)), **preds, **trained)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written fold behind


def _load_fold(path: Path, fold: Fold, fingerprint: str) -> tuple[dict[str, np.ndarray], FoldRecord] | None:
    """The saved fold at `path` when it belongs to this run's config and fold plan, else None."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta["fingerprint"] != fingerprint or not np.array_equal(saved["test"], fold.test):
            raise DMLInputError(
                f"{path} holds a fold of a different run (other data, model, dml settings or seed). Resume into "
                f"the run directory of the same command, or start a new one (omit hydra.run.dir)."
            )
        preds = {key: saved[key] for key in ("g0", "g1", "m")}
        trained = {key.removeprefix("trained_"): saved[key] for key in saved.files if key.startswith("trained_")}
    record = FoldRecord(fold, trained, meta["outcome_mse"], meta["propensity_bce"], meta["probe_r2"],
                        meta["jepa_metrics"])  # fmt: skip
    return preds, record


def run_crossfit(cfg: DictConfig, sample: CausalSample | None = None) -> CrossfitResult:
    """The cross-fitting loop; returns the estimate with the fold plan and out-of-fold predictions.

    `sample` replaces `cfg.data` (benchmarks pass raw pixels or the true confounders as covariates).
    """
    dml = cfg.dml
    # Folds are saved and resumed only for the configured data (benchmarks pass their own `sample`).
    sample_from_config = sample is None
    sample = load_sample(cfg.data) if sample is None else sample
    fingerprint = fold_fingerprint(cfg)
    check_sample(sample, k_folds=dml.k_folds)
    if sample.is_video and cfg.get("model") is None:
        raise DMLInputError("video data needs a representation model: add `model=jepa`.")
    plan = stratified_folds(sample.treatment, dml.k_folds, n_rep=dml.n_rep, seed=dml.split_seed)
    n = len(sample)
    predictions, records, elements = [], [], []
    for rep in plan:
        oof = {key: np.full(n, np.nan) for key in ("g0", "g1", "m")}
        for fold in rep:
            # Finished folds are saved as they complete; a rerun into the same run directory (a killed run
            # resumed with hydra.run.dir=...) reuses them and fits from the first unfinished fold on.
            saved_path = Path(cfg.paths.output_dir) / f"rep{fold.rep}" / f"fold{fold.k}" / "oof.npz"
            saved = _load_fold(saved_path, fold, fingerprint) if sample_from_config else None
            # Ranks that disagreed here would enter different collectives and hang; stop them all instead.
            if len(set(all_gather(saved is not None))) > 1:
                raise RuntimeError(f"{saved_path}: DDP ranks disagree on whether this fold is finished")
            if saved is not None:
                log.info("rep %d fold %d: reusing %s", fold.rep, fold.k, saved_path)
                preds, record = saved
            else:
                # Each fold's models get their own seed: seed + fold (offset by repetition).
                seed = int(cfg.seed) + fold.rep * dml.k_folds + fold.k
                preds, record = fit_fold(cfg, sample, fold, seed=seed)
                if sample_from_config:
                    # The predictions are identical on every rank: one writer. The rank is read here, not before
                    # the loop: Lightning creates the process group at the first DDP fit.
                    if rank_and_world()[0] == 0:
                        _save_fold(saved_path, preds, record, fingerprint)
                        log.info("rep %d fold %d: saved %s", fold.rep, fold.k, saved_path)
                    barrier()  # a resume or a later reader never sees a missing or half-written fold
            for key, values in preds.items():
                oof[key][fold.test] = values
            records.append(record)
        oof["ell"] = oof["m"] * oof["g1"] + (1 - oof["m"]) * oof["g0"]  # E[Y|X] for the PLR score
        check_identical(list(oof.values()), f"rep {rep[0].rep}: out-of-fold predictions")
        predictions.append(oof)
        elements.append(_elements(dml, sample, oof))
    result = aggregate(dml.score, elements, level=dml.level)
    if result.clipped_share > dml.max_clipped_share:
        raise DMLInputError(
            f"no overlap: {result.clipped_share:.1%} of the estimated propensities fall outside "
            f"[{dml.trim}, {1 - dml.trim}] (limit dml.max_clipped_share={dml.max_clipped_share}); treated and "
            f"control rows are too different for a reliable estimate. Restrict the data to comparable units, or "
            f"raise the limit knowingly."
        )
    d, y = sample.treatment, sample.outcome
    y1, y0 = y[d == 1], y[d == 0]
    naive = float(y1.mean() - y0.mean())
    naive_se = float(np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0)))
    return CrossfitResult(result, sample, plan, predictions, records, naive, naive_se)


def _elements(dml: DictConfig, sample: CausalSample, oof: dict[str, np.ndarray]) -> ScoreElements:
    return score_elements(
        dml.score,
        sample.outcome,
        sample.treatment,
        g0=oof["g0"],
        g1=oof["g1"],
        m=oof["m"],
        ell=oof["ell"],
        trim=dml.trim,
        normalize=dml.normalize,
    )


def summarize(out: CrossfitResult) -> dict[str, float]:
    """metrics.json content: the estimate, SE, CI, n, naive estimate, truth and per-fold diagnostics."""
    metrics = out.result.as_metrics("dml")
    metrics["dml/naive"] = out.naive
    metrics["dml/naive_se"] = out.naive_se
    if out.sample.true_ate is not None:
        metrics["dml/true_ate"] = out.sample.true_ate
    multi = len(out.plan) > 1
    for rec in out.records:
        prefix = f"dml/rep{rec.fold.rep}/fold{rec.fold.k}" if multi else f"dml/fold{rec.fold.k}"
        metrics[f"{prefix}/outcome_mse"] = rec.outcome_mse
        metrics[f"{prefix}/propensity_bce"] = rec.propensity_bce
        if rec.probe_r2 is not None:
            metrics[f"{prefix}/probe_r2"] = rec.probe_r2
        if "val/emb_std" in rec.jepa_metrics:
            metrics[f"{prefix}/jepa_emb_std"] = rec.jepa_metrics["val/emb_std"]
    metrics["dml/outcome_mse"] = float(np.mean([r.outcome_mse for r in out.records]))
    metrics["dml/propensity_bce"] = float(np.mean([r.propensity_bce for r in out.records]))
    probes = [r.probe_r2 for r in out.records if r.probe_r2 is not None]
    if probes:
        metrics["dml/probe_r2"] = float(np.mean(probes))
    return metrics


@rank_zero_only
def _figures(cfg: DictConfig, out: CrossfitResult) -> None:
    """Propensity overlap by arm and the CI against the naive estimate (and the truth), as PNG + TensorBoard."""
    r = out.result
    figures = {
        "propensity_overlap": propensity_overlap_figure(
            out.predictions[0]["m"], out.sample.treatment, trim=cfg.dml.trim
        ),
        "ci": ci_figure(
            {
                f"DML ({r.score.upper()})": (r.estimate, r.ci_low, r.ci_high),
                "naive": (out.naive, out.naive - 1.96 * out.naive_se, out.naive + 1.96 * out.naive_se),
            },
            truth=out.sample.true_ate,
        ),
    }
    loggers = instantiate_loggers(cfg)
    for name, fig in figures.items():
        save_figure(fig, Path(cfg.paths.output_dir) / "figures" / f"{name}.png", close=False)
        log_figure(loggers, f"dml/{name}", fig)


def crossfit(cfg: DictConfig) -> dict[str, float]:
    """The task: cross-fit, estimate, write figures, return the metrics (run.py writes metrics.json)."""
    out = run_crossfit(cfg)
    metrics = summarize(out)
    _figures(cfg, out)
    r = out.result
    log.info(
        "DML %s = %.4f (SE %.4f, %.0f%% CI [%.4f, %.4f]), naive %.4f, n = %d",
        r.score,
        r.estimate,
        r.se,
        100 * r.level,
        r.ci_low,
        r.ci_high,
        out.naive,
        r.n,
    )
    return metrics
