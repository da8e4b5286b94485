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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from causal_engine.dml.analyses import analyse, check_analyses
from causal_engine.dml.data import CausalSample, DMLInputError, check_sample, load_sample, with_representation
from causal_engine.dml.ddp import all_gather, barrier, check_identical, rank_and_world
from causal_engine.dml.fold import FoldRecord, fit_fold, fold_seed
from causal_engine.dml.folds import Fold, stratified_folds
from causal_engine.dml.learners import describe_learner
from causal_engine.dml.pretrain import pretrained_sample
from causal_engine.dml.scores import DMLResult, aggregate, clipped_share, score_elements, tail_shares
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
    predictions: list[dict[str, np.ndarray]]  # per repetition: g0, g1, m (ate/att) or ell, m (plr), each [N]
    records: list[FoldRecord]
    naive: float
    naive_se: float


def run_crossfit(
    cfg: DictConfig, sample: CausalSample | None = None, check: Callable[[CausalSample], None] | None = None
) -> CrossfitResult:
    """The cross-fitting loop; returns the estimate with the fold plan and out-of-fold predictions.

    `sample` replaces `cfg.data` (benchmarks pass raw pixels or the true confounders as covariates); the
    configured data goes through `dml.representation` first. `check` sees the sample the folds will read before
    the first fold is fitted (the task checks its analyses' columns there).
    """
    dml = cfg.dml
    # Folds are saved and resumed only for the configured data (benchmarks pass their own `sample`).
    sample_from_config = sample is None
    sample = with_representation(load_sample(cfg.data), dml.representation) if sample is None else sample
    fingerprint = fold_fingerprint(cfg)
    check_sample(sample, k_folds=dml.k_folds, score=dml.score)
    if sample.is_video and cfg.get("model") is None:
        raise DMLInputError("video data needs a representation model: add `model=jepa`.")
    log.info(describe_learner(dml, sample))
    # One label-free JEPA for every fold instead of one per fold; a benchmark's pixel or oracle samples keep theirs.
    if dml.pretrain == "once" and (sample.is_video or sample_from_config):
        sample = pretrained_sample(cfg, sample, fingerprint)
    if check is not None:
        check(sample)
    plan = stratified_folds(sample.treatment, dml.k_folds, n_rep=dml.n_rep, seed=dml.split_seed)
    n = len(sample)
    predictions, records, elements = [], [], []
    for rep in plan:
        oof: dict[str, np.ndarray] = {}
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
                oof.setdefault(key, np.full(n, np.nan))[fold.test] = values
            records.append(record)
            # The propensities exist now: a run whose overlap is hopeless stops here, not after every fold.
            seen = np.isfinite(oof["m"])
            check_overlap(dml, oof["m"][seen], final=False)
        check_identical(list(oof.values()), f"rep {rep[0].rep}: out-of-fold predictions")
        predictions.append(oof)
        elements.append(
            score_elements(dml.score, sample.outcome, sample.treatment, oof, trim=dml.trim, normalize=dml.normalize)
        )
    result = aggregate(dml.score, elements, level=dml.level)
    for oof in predictions:
        check_overlap(dml, oof["m"], final=True)
    naive, naive_se = ols_slope(sample.treatment, sample.outcome)
    return CrossfitResult(result, sample, plan, predictions, records, naive, naive_se)


def check_overlap(dml: DictConfig, m: np.ndarray, *, final: bool) -> None:
    """Stop when more than `dml.max_clipped_share` of the propensities `m` fall in the tails the score clips
    (`scores.CLIPPED_TAILS`: both for ate, the upper one for att, none for plr, which only reports overlap).

    After each fold (`final=False`) the run stops only when the share seen so far exceeds the limit by more
    than three binomial standard errors, so a run is never stopped early by one fold's luck; `final=True` is
    the exact check on a repetition's pooled propensities."""
    if dml.score == "plr" or len(m) == 0:
        return
    share = clipped_share(dml.score, m, dml.trim)
    margin = 0.0 if final else 3.0 * np.sqrt(share * (1.0 - share) / len(m))
    if share - margin <= dml.max_clipped_share:
        return
    below, above = float(np.mean(m < dml.trim)), float(np.mean(m > 1 - dml.trim))
    tails = {
        "ate": f"outside [{dml.trim}, {1 - dml.trim}] ({below:.1%} below, where almost only controls are; "
        f"{above:.1%} above, where almost only treated rows are)",
        "att": f"above {1 - dml.trim} (controls that look treated; the ATT ignores e(x) near 0)",
    }[dml.score]
    seen = "" if final else f" after {len(m)} held-out rows (the run stopped at the first folds)"
    # The ATT clips only the upper tail: it answers when the treated rows have comparable controls.
    att = dml.score == "ate" and above <= dml.max_clipped_share
    also = ", estimate the effect on the treated (dml.score=att, whose upper tail is within the limit)" if att else ""
    raise DMLInputError(
        f"no overlap: {share:.1%} of the estimated propensities fall {tails}{seen}, above "
        f"dml.max_clipped_share={dml.max_clipped_share} (with dml.trim={dml.trim}); treated and control rows "
        f"are too different for a reliable {dml.score.upper()}. Restrict the data to comparable units{also}, or "
        f"raise dml.max_clipped_share knowingly."
    )


def ols_slope(d: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The naive estimate: the OLS slope of y on d and its HC2 (heteroskedasticity-robust) standard error.

    For a binary d the slope is the difference in means and HC2 is exactly the two-sample (Welch) SE."""
    d, y = np.asarray(d, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dc = d - d.mean()  # [n]
    sxx = np.sum(dc**2)
    slope = float(np.sum(dc * y) / sxx)
    resid = y - y.mean() - slope * dc  # [n]
    leverage = 1.0 / len(d) + dc**2 / sxx  # [n] diagonal of the hat matrix of (1, d)
    se = float(np.sqrt(np.sum(dc**2 * resid**2 / (1.0 - leverage)) / sxx**2))
    return slope, se


def summarize(out: CrossfitResult) -> dict[str, float]:
    """metrics.json content: the estimate, SE, CI, n, overlap shares, naive estimate, truth, and per fold the
    held-out losses and each network's convergence (`.../outcome/converged`, `/epochs`, `/best_val_loss`)."""
    metrics = out.result.as_metrics("dml")
    metrics["dml/naive"] = out.naive
    metrics["dml/naive_se"] = out.naive_se
    if out.sample.true_ate is not None:
        metrics["dml/true_ate"] = out.sample.true_ate
    multi = len(out.plan) > 1
    losses = ("outcome_mse", "propensity_bce", "treatment_mse", "probe_r2")
    for rec in out.records:
        prefix = f"dml/rep{rec.fold.rep}/fold{rec.fold.k}" if multi else f"dml/fold{rec.fold.k}"
        for name in losses:
            if getattr(rec, name) is not None:
                metrics[f"{prefix}/{name}"] = getattr(rec, name)
        if "val/emb_std" in rec.jepa_metrics:
            metrics[f"{prefix}/jepa_emb_std"] = rec.jepa_metrics["val/emb_std"]
        metrics.update({f"{prefix}/{key}": value for key, value in rec.convergence.items()})
    for name in losses:
        values = [getattr(r, name) for r in out.records if getattr(r, name) is not None]
        if values:
            metrics[f"dml/{name}"] = float(np.mean(values))
    converged = [value for r in out.records for key, value in r.convergence.items() if key.endswith("/converged")]
    if converged:
        metrics["dml/converged"] = float(all(converged))
    return metrics


@rank_zero_only
def _figures(cfg: DictConfig, out: CrossfitResult) -> None:
    """Propensity overlap by arm (binary treatments) and the CI against the naive estimate (and the truth), as
    PNG + TensorBoard."""
    r = out.result
    figures = {}
    if out.sample.binary_treatment:
        m, trim = out.predictions[0]["m"], cfg.dml.trim
        below, above = tail_shares(m, trim)
        clipped = clipped_share(r.score, m, trim)
        note = f"{below:.1%} < {trim:g}, {above:.1%} > {1 - trim:g}; {r.score} clips {clipped:.1%}"
        figures["propensity_overlap"] = propensity_overlap_figure(m, out.sample.treatment, trim=trim, note=note)
    figures |= {
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
    out = run_crossfit(cfg, check=lambda sample: check_analyses(cfg, sample))
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
    if r.share_below is not None:
        log.info(
            "overlap: %.1f%% of propensities below %g, %.1f%% above %g; the %s score clips %.1f%% (limit "
            "dml.max_clipped_share=%g)",
            100 * r.share_below,
            cfg.dml.trim,
            100 * r.share_above,
            1 - cfg.dml.trim,
            r.score,
            100 * r.clipped_share,
            cfg.dml.max_clipped_share,
        )
    if "dml/converged" in metrics:
        log.info(
            "nuisance networks: %s",
            "every fit converged"
            if metrics["dml/converged"]
            else "some fits did NOT converge (see the warnings above; raise dml.convergence.max_steps)",
        )
    return analyse(cfg, out, metrics)
