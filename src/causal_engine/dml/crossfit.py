"""`task=crossfit`: K-fold cross-fitted DML with a fresh representation and fresh nuisances per fold.

For each repetition r and fold k the loop runs one fold's steps (`causal_engine.dml.fold`: represent →
fit nuisances → predict held-out) and keeps the fold in the store (`causal_engine.dml.store`) so a killed
run resumes. The pooled out-of-fold predictions enter the orthogonal score (`causal_engine.dml.scores`).
Tabular data (`data=table`) skips the JEPA: the nuisances take the covariates.

Under `trainer=ddp` every rank runs this same loop; fits synchronise gradients, inference is split across
ranks and gathered back by row index (`causal_engine.dml.ddp`), and only rank 0 writes files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from causal_engine.dml.analyses import analyse
from causal_engine.dml.data import CausalSample, DMLInputError, check_sample, load_sample, with_representation
from causal_engine.dml.ddp import all_gather, barrier, check_identical, rank_and_world
from causal_engine.dml.fold import FoldRecord, fit_fold, fold_seed
from causal_engine.dml.folds import Fold, stratified_folds
from causal_engine.dml.pretrain import pretrained_sample
from causal_engine.dml.scores import DMLResult, ScoreElements, aggregate, score_elements
from causal_engine.dml.store import fold_fingerprint, fold_path, load_fold, save_fold
from causal_engine.plots import ci_figure, log_figure, propensity_overlap_figure, save_figure
from causal_engine.train import instantiate_loggers

log = logging.getLogger(__name__)


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


def run_crossfit(cfg: DictConfig, sample: CausalSample | None = None) -> CrossfitResult:
    """The cross-fitting loop; returns the estimate with the fold plan and out-of-fold predictions.

    `sample` replaces `cfg.data` (benchmarks pass raw pixels or the true confounders as covariates); the
    configured data goes through `dml.representation` first.
    """
    dml = cfg.dml
    # Folds are saved and resumed only for the configured data (benchmarks pass their own `sample`).
    sample_from_config = sample is None
    sample = with_representation(load_sample(cfg.data), dml.representation) if sample is None else sample
    fingerprint = fold_fingerprint(cfg)
    check_sample(sample, k_folds=dml.k_folds)
    if sample.is_video and cfg.get("model") is None:
        raise DMLInputError("video data needs a representation model: add `model=jepa`.")
    # One label-free JEPA for every fold instead of one per fold; a benchmark's pixel or oracle samples keep theirs.
    if dml.pretrain == "once" and (sample.is_video or sample_from_config):
        sample = pretrained_sample(cfg, sample, fingerprint)
    plan = stratified_folds(sample.treatment, dml.k_folds, n_rep=dml.n_rep, seed=dml.split_seed)
    n = len(sample)
    predictions, records, elements = [], [], []
    for rep in plan:
        oof = {key: np.full(n, np.nan) for key in ("g0", "g1", "m")}
        for fold in rep:
            # Finished folds are saved as they complete; a rerun into the same run directory (a killed run
            # resumed with hydra.run.dir=...) reuses them and fits from the first unfinished fold on.
            saved_path = fold_path(cfg.paths.output_dir, fold)
            saved = load_fold(saved_path, fold, fingerprint) if sample_from_config else None
            # Ranks that disagreed here would enter different collectives and hang; stop them all instead.
            if len(set(all_gather(saved is not None))) > 1:
                raise RuntimeError(f"{saved_path}: DDP ranks disagree on whether this fold is finished")
            if saved is not None:
                log.info("rep %d fold %d: reusing %s", fold.rep, fold.k, saved_path)
                preds, record = saved
            else:
                # Each fold's models get their own seed: seed + fold (offset by repetition).
                preds, record = fit_fold(cfg, sample, fold, seed=fold_seed(cfg.seed, fold, dml.k_folds))
                if sample_from_config:
                    # The predictions are identical on every rank: one writer. The rank is read here, not before
                    # the loop: Lightning creates the process group at the first DDP fit.
                    if rank_and_world()[0] == 0:
                        save_fold(saved_path, preds, record, fingerprint)
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
    """The task: cross-fit, estimate, write figures, add the sensitivity and heterogeneity analyses
    (`causal_engine.dml.analyses`), log to TensorBoard, return the metrics (run.py writes metrics.json)."""
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
    return analyse(cfg, out, metrics)
