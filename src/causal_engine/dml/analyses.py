"""What `task=crossfit` reports beyond the estimate, from the same out-of-fold predictions.

- Sensitivity to omitted confounding (`causal_engine.dml.sensitivity`): bounds at `dml.sensitivity.{cf_y,
  cf_d, rho}`, robustness values, a contour figure; with `dml.sensitivity.benchmark=[cols]` the nuisances are
  refitted without that covariate group on the same folds (same plan, same seeds) and the strengths the group
  would have as an omitted confounder are reported, as DoubleML's `sensitivity_benchmark`, with the bounds
  an omitted confounder that strong would give (at `dml.sensitivity.rho`).
- Heterogeneous effects (`causal_engine.dml.heterogeneity`): GATEs for the groups of a table column
  (`dml.gate.groups`; with `dml.gate.quantiles=q`, a numeric column split at its sample quantiles) and the BLP
  of the CATE on columns (`dml.blp.covariates`): covariates, or any column of a `data=table`, as CSV, figure
  and metrics.
- TensorBoard: every metric as a scalar and the run's settings as HParams with the headline metrics, in the
  run's own TensorBoard directory, so the runs of a sweep line up side by side.

Each part only reads `CrossfitResult`; the fold loop knows nothing of them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from causal_engine.dml.data import CausalSample, DMLInputError
from causal_engine.dml.heterogeneity import LinearEffects, blp, gate, quantile_groups
from causal_engine.dml.scores import Predictions
from causal_engine.dml.sensitivity import (
    SensitivityElements,
    benchmark,
    benchmark_bounds,
    contour_grid,
    sensitivity_analysis,
    sensitivity_elements,
)
from causal_engine.plots import group_effects_figure, log_figure, save_figure, sensitivity_contour_figure
from causal_engine.tables import TableSource
from causal_engine.train import instantiate_loggers, with_output_dir

if TYPE_CHECKING:
    from causal_engine.dml.crossfit import CrossfitResult

log = logging.getLogger(__name__)

# Grid of the contour figure: cf_y and cf_d from 0 to this value (DoubleML's default plot range).
CONTOUR_MAX = 0.15
CONTOUR_POINTS = 16
# metrics.json keys of the bounds at the benchmarked strengths.
BOUND_NAMES = tuple(f"dml/sensitivity/benchmark/{k}" for k in ("theta_lower", "theta_upper", "ci_low", "ci_high"))


def sensitivity_reps(dml: DictConfig, sample: CausalSample, predictions: list[Predictions]) -> list:
    """One `SensitivityElements` per cross-fitting repetition."""
    y, d = sample.outcome, sample.treatment
    return [sensitivity_elements(dml.score, y, d, p, trim=dml.trim, normalize=dml.normalize) for p in predictions]


def without_features(sample: CausalSample, group: list[str]) -> CausalSample:
    """`sample` with the covariates named in `group` removed (the benchmark's short model)."""
    if sample.is_video:
        raise DMLInputError(
            "dml.sensitivity.benchmark names covariates; a JEPA learnt per fold has no fixed feature to leave out. "
            "With dml.pretrain=once the representation is fixed and its features are named z0, z1, ..."
        )
    names = list(sample.feature_names)
    unknown = [c for c in group if c not in names]
    if unknown:
        raise DMLInputError(f"dml.sensitivity.benchmark={group}: {unknown} are not among data.covariates={names}.")
    keep = [i for i, name in enumerate(names) if name not in group]
    if not keep:
        raise DMLInputError(
            f"dml.sensitivity.benchmark={group} names every covariate; keep at least one to refit without the group."
        )
    return replace(sample, features=sample.features[:, keep], feature_names=tuple(names[i] for i in keep))


def check_analyses(cfg: DictConfig, sample: CausalSample) -> None:
    """The analyses' columns checked against the data before any fold is fitted (`run_crossfit`'s `check`): a
    benchmark group that is not a proper subset of the covariates, or a GATE or BLP column the data lacks, stops
    the run in seconds instead of after the cross-fit."""
    dml = cfg.dml
    if dml.sensitivity.benchmark:
        without_features(sample, [str(c) for c in dml.sensitivity.benchmark])
    if dml.gate.groups:
        _columns(cfg, sample, "dml.gate.groups", [str(dml.gate.groups)], text=dml.gate.quantiles is None)
    if dml.blp.covariates:
        _columns(cfg, sample, "dml.blp.covariates", [str(c) for c in dml.blp.covariates], text=False)


def sensitivity(cfg: DictConfig, out: CrossfitResult) -> dict[str, float]:
    """Bounds, robustness values, the optional benchmark and the contour figure; returns their metrics."""
    dml, conf = cfg.dml, cfg.dml.sensitivity
    reps = sensitivity_reps(dml, out.sample, out.predictions)
    result = sensitivity_analysis(reps, cf_y=conf.cf_y, cf_d=conf.cf_d, rho=conf.rho, level=dml.level)
    metrics = result.as_metrics()
    marks: dict[str, tuple[float, float]] = {}
    if conf.benchmark:
        from causal_engine.dml.crossfit import run_crossfit  # the loop calls this module: import at use

        group = [str(c) for c in conf.benchmark]
        short_cfg = with_output_dir(cfg, Path(cfg.paths.output_dir) / "sensitivity_benchmark")
        short = run_crossfit(short_cfg, sample=without_features(out.sample, group))
        bench = benchmark(reps, sensitivity_reps(dml, short.sample, short.predictions))
        # The bounds if the omitted confounder were as strong as the group: what the benchmark is for.
        at_bench = benchmark_bounds(reps, bench, rho=conf.rho, level=dml.level)
        metrics |= bench.as_metrics() | dict(zip(BOUND_NAMES, at_bench, strict=True))
        marks["+".join(group)] = (bench.cf_y, bench.cf_d)
        log.info(
            "benchmark %s: cf_y %.4f, cf_d %.4f, rho %.3f (estimate without it moves by %.4f); an omitted "
            "confounder as strong gives bounds [%.4f, %.4f], CI [%.4f, %.4f]",
            group,
            bench.cf_y,
            bench.cf_d,
            bench.rho,
            bench.delta_theta,
            *at_bench,
        )
    log.info(
        "sensitivity at cf_y=%g, cf_d=%g, rho=%g: bounds [%.4f, %.4f], CI [%.4f, %.4f], RV %.3f, RVa %.3f",
        conf.cf_y,
        conf.cf_d,
        conf.rho,
        result.theta_lower,
        result.theta_upper,
        result.ci_low,
        result.ci_high,
        result.rv,
        result.rva,
    )
    _contour(cfg, reps, (conf.cf_y, conf.cf_d), marks)
    return metrics


@rank_zero_only
def _contour(
    cfg: DictConfig,
    reps: list[SensitivityElements],
    scenario: tuple[float, float],
    marks: dict[str, tuple[float, float]],
) -> None:
    top = max(CONTOUR_MAX, *scenario, *(v for mark in marks.values() for v in mark))
    grid = np.linspace(0.0, min(top, 0.99), CONTOUR_POINTS)
    values = contour_grid(reps, grid, grid, rho=cfg.dml.sensitivity.rho, level=cfg.dml.level)  # [Y, D]
    fig = sensitivity_contour_figure(grid, grid, values, scenario=scenario, benchmarks=marks)
    _emit(cfg, "sensitivity_contour", fig)


def _columns(cfg: DictConfig, sample: CausalSample, key: str, columns: list[str], *, text: bool) -> np.ndarray:
    """Columns [N, k] by name: the sample's own covariates, else columns of the configured table (row-aligned
    with the sample: `load_table` refuses incomplete rows)."""
    names = list(sample.feature_names)
    if not sample.is_video and all(c in names for c in columns):
        return sample.features[:, [names.index(c) for c in columns]].double().numpy()
    data = instantiate(cfg.data)
    if not isinstance(data, TableSource):
        raise DMLInputError(
            f"{key}={columns}: {[c for c in columns if c not in names]} are not covariates of this data "
            f"({names}); name covariates, or use data=table to name any column of the table."
        )
    return data.load(columns, text_columns=columns if text else ())[columns].to_numpy()


def heterogeneity(cfg: DictConfig, out: CrossfitResult) -> dict[str, float]:
    """GATEs (`dml.gate.groups`) and the BLP (`dml.blp.covariates`) when configured: CSV, figure, metrics."""
    dml, metrics = cfg.dml, {}
    kwargs = {"trim": dml.trim, "normalize": dml.normalize, "level": dml.level}
    y, d = out.sample.outcome, out.sample.treatment
    if dml.gate.groups:
        column = str(dml.gate.groups)
        numeric = dml.gate.quantiles is not None
        groups = _columns(cfg, out.sample, "dml.gate.groups", [column], text=not numeric)[:, 0]  # [N]
        if numeric:
            groups, cuts = quantile_groups(groups, int(dml.gate.quantiles))
            log.info("GATE groups: %s split at %s", column, ", ".join(f"{c:.4g}" for c in cuts))
        metrics |= _report(cfg, out, gate(dml.score, y, d, groups, out.predictions, **kwargs))
    if dml.blp.covariates:
        columns = [str(c) for c in dml.blp.covariates]
        basis = _columns(cfg, out.sample, "dml.blp.covariates", columns, text=False)  # [N, k]
        metrics |= _report(cfg, out, blp(dml.score, y, d, basis, out.predictions, names=columns, **kwargs))
    return metrics


def _report(cfg: DictConfig, out: CrossfitResult, effects: LinearEffects) -> dict[str, float]:
    _write(cfg, out, effects)
    return effects.as_metrics("dml")


@rank_zero_only
def _write(cfg: DictConfig, out: CrossfitResult, effects: LinearEffects) -> None:
    effects.write_csv(Path(cfg.paths.output_dir) / f"{effects.kind}.csv")
    title = {"gate": "group average effects", "blp": "best linear projection of the CATE"}[effects.kind]
    fig = group_effects_figure(
        effects.names,
        effects.estimate,
        effects.ci_low,
        effects.ci_high,
        overall=out.result.estimate if effects.kind == "gate" else None,
        title=f"{title} ({effects.level:.0%} CI)",
    )
    _emit(cfg, effects.kind, fig)


def _emit(cfg: DictConfig, name: str, fig: Any) -> None:
    save_figure(fig, Path(cfg.paths.output_dir) / "figures" / f"{name}.png", close=False)
    log_figure(instantiate_loggers(cfg), f"dml/{name}", fig)


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The settings a sweep varies: data and representation, score, folds, seeds and the sensitivity scenario."""
    dml = OmegaConf.to_container(cfg.dml, resolve=True)
    flat = {f"dml/{k}": v for k, v in dml.items() if isinstance(v, bool | int | float | str)}
    flat |= {f"dml/sensitivity/{k}": v for k, v in dml["sensitivity"].items() if isinstance(v, int | float)}
    flat["data"] = str(cfg.data.get("_target_", ""))
    flat["model"] = str(cfg.model.get("_target_", "")) if cfg.get("model") is not None else "none"
    flat["seed"] = int(cfg.seed)
    return flat


@rank_zero_only
def log_tensorboard(cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Every metric as a step-0 scalar, and an HParams session with the run-level ones (per-fold losses stay
    scalars), in the run's TensorBoard directory."""
    headline = {k: v for k, v in metrics.items() if "/fold" not in k and "/rep" not in k}
    for logger in instantiate_loggers(cfg):
        if isinstance(logger, TensorBoardLogger):
            # log_hyperparams writes the headline metrics as step-0 scalars itself; the per-fold ones are added.
            logger.log_metrics({k: v for k, v in metrics.items() if k not in headline}, step=0)
            logger.log_hyperparams(hparams(cfg), metrics=headline)
            logger.save()
            logger.finalize("success")


def against_truth(out: CrossfitResult) -> dict[str, float]:
    """Bias and CI coverage of the simulator's true ATE (empty on real data): a sweep over seeds averages
    `dml/covers` into the coverage rate and `dml/bias` into the bias."""
    truth, r = out.sample.true_ate, out.result
    if truth is None:
        return {}
    return {"dml/bias": r.estimate - truth, "dml/covers": float(r.ci_low <= truth <= r.ci_high)}


def analyse(cfg: DictConfig, out: CrossfitResult, metrics: dict[str, float]) -> dict[str, float]:
    """Truth checks, sensitivity and heterogeneous effects added to `metrics`, then all logged to TensorBoard."""
    metrics = metrics | against_truth(out) | sensitivity(cfg, out) | heterogeneity(cfg, out)
    log_tensorboard(cfg, metrics)
    return metrics
