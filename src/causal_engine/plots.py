"""Figures: each function returns a matplotlib Figure; `save_figure` writes PNG, `log_figure` sends to TensorBoard.

Matplotlib runs headless (Agg) so figures render on servers, in CI and inside DataLoader workers.
Each system adds its figure functions under its own heading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | Path, *, close: bool = True) -> Path:
    """Write `fig` as PNG (parents created) and close it unless asked not to."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    if close:
        plt.close(fig)
    return out


def figure_dir(trainer: Any) -> Path | None:
    """Where a LightningModule saves PNGs: `<run dir>/figures`; None under fast_dev_run (nothing is logged).

    Uses `trainer.default_root_dir`, not `trainer.log_dir`: the latter is a DDP broadcast, which deadlocks
    when called from rank-zero-only code.
    """
    if trainer.fast_dev_run:
        return None
    return Path(trainer.default_root_dir) / "figures"


def log_figure(loggers: Any, tag: str, fig: Figure, step: int = 0, *, close: bool = True) -> None:
    """Add `fig` to every TensorBoard logger among `loggers` (a Lightning logger or a list of them)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in loggers if isinstance(loggers, list | tuple) else [loggers]:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=step, close=False)
    if close:
        plt.close(fig)


# --- discovery (helper "pfn"): adjacency heatmaps and delta scatter ----------------------------------------


def adjacency_figure(
    true: Any, pred: Any, names: list[str] | None = None, title: str = "predicted edge probability"
) -> Figure:
    """Heatmaps of the true adjacency (left; omitted when None) and predicted edge probabilities (right).

    Row = parent, column = child: entry (i, j) is the edge i -> j.
    """
    panels = [("true graph", true), (title, pred)] if true is not None else [(title, pred)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (label, matrix) in zip(axes[0], panels, strict=True):
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(label)
        ax.set_xlabel("child")
        ax.set_ylabel("parent")
        if names is not None and len(names) <= 30:
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def delta_scatter_figure(true: Any, pred: Any, title: str = "counterfactual deltas (z-units)") -> Figure:
    """Predicted vs true deltas with the identity line."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(true, pred, s=4, alpha=0.4)
    if len(true):
        low, high = float(min(min(true), min(pred))), float(max(max(true), max(pred)))
        ax.plot([low, high], [low, high], color="black", lw=0.8)
    ax.set_xlabel("true delta")
    ax.set_ylabel("predicted delta")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --- causal fine-tuning (helper "intervene"): do-response, error vs N, phase-1 summary ----------------------


def do_response_figure(
    grid: Any,
    truth: Any,
    curves: dict[str, Any],
    xlabel: str = "v",
    ylabel: str = "E[Y | do(X = v)]",
    title: str = "do-response",
) -> Figure:
    """The true do-response curve (black) and each model's estimate over the treatment grid."""
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    ax.plot(grid, truth, color="black", lw=2, marker="o", ms=3, label="truth")
    for name, curve in curves.items():
        ax.plot(grid, curve, marker=".", lw=1.2, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def error_vs_n_figure(
    series: dict[str, tuple[Any, Any, Any, Any]],
    target: float | None = None,
    title: str = "error vs N",
    ylabel: str = "interventional RMSE",
) -> Figure:
    """Error against training size per model: series[name] = (N, mean, low, high), with a band for the
    seed interval and an optional horizontal target line. Log-log axes."""
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    for name, (ns, mean, low, high) in series.items():
        (line,) = ax.plot(ns, mean, marker="o", ms=3, label=name)
        ax.fill_between(ns, low, high, color=line.get_color(), alpha=0.2)
    if target is not None:
        ax.axhline(target, color="black", ls="--", lw=0.8, label="target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training rows N")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def training_summary_figure(
    histories: dict[str, dict[str, list[float]]],
    coefficients: dict[str, Any],
    true_coefficients: Any,
    names: list[str],
    do_answers: dict[str, float],
    do_truth: float,
    do_label: str,
) -> Figure:
    """Phase-1 summary: loss curves per model, recovered vs true coefficients, and one do-query answer."""
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.8))
    for model, history in histories.items():
        for key, values in history.items():
            axes[0].plot(range(1, len(values) + 1), values, label=f"{model} {key}")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss (standardised MSE)")
    axes[0].set_title("training")
    axes[0].legend(fontsize=7)
    width = 0.8 / (len(coefficients) + 1)
    positions = np.arange(len(names))
    axes[1].bar(positions, true_coefficients, width, color="black", label="truth")
    for k, (model, coef) in enumerate(coefficients.items(), start=1):
        axes[1].bar(positions + k * width, coef, width, label=model)
    axes[1].set_xticks(positions + width * len(coefficients) / 2, names)
    axes[1].set_title("coefficient recovery  dE[y|do(x_i)]/dx_i")
    axes[1].legend(fontsize=7)
    labels = ["truth", *do_answers]
    axes[2].bar(labels, [do_truth, *do_answers.values()], color=["black", *[f"C{i}" for i in range(len(do_answers))]])
    axes[2].set_title(do_label)
    fig.tight_layout()
    return fig


# --- jepa-dml (helper "jepa-dml"): propensity overlap and interval comparison --------------------------------
def propensity_overlap_figure(propensity: Any, treatment: Any, *, trim: float = 0.0, note: str = "") -> Figure:
    """Histograms of the estimated propensity by arm; the trimming thresholds as dashed lines; `note` (e.g. the
    shares in each tail) as a second title line.

    Mass piled against 0 or 1 in one arm means the arms barely overlap and the AIPW weights explode.
    """
    import numpy as np

    m, d = np.asarray(propensity, dtype=float), np.asarray(treatment, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(0, 1, 41)
    ax.hist(m[d == 0], bins=bins, alpha=0.6, density=True, label=f"control (n={int((d == 0).sum())})")
    ax.hist(m[d == 1], bins=bins, alpha=0.6, density=True, label=f"treated (n={int((d == 1).sum())})")
    if trim > 0:
        for x in (trim, 1 - trim):
            ax.axvline(x, color="k", ls="--", lw=0.8)
    ax.set_xlabel("estimated propensity P(T=1 | X)")
    ax.set_ylabel("density")
    ax.set_title("propensity overlap by arm (out-of-fold)" + (f"\n{note}" if note else ""), fontsize=9)
    ax.legend(fontsize=8)
    return fig


def ci_figure(intervals: dict[str, tuple[float, float, float]], *, truth: float | None = None) -> Figure:
    """Point estimates with confidence intervals, one row per estimator, and the true value when known."""
    fig, ax = plt.subplots(figsize=(5, 0.6 + 0.5 * len(intervals)))
    for i, (est, low, high) in enumerate(intervals.values()):
        ax.errorbar(est, i, xerr=[[est - low], [high - est]], fmt="o", capsize=4)
        ax.text(high, i + 0.15, f" {est:.3f} [{low:.3f}, {high:.3f}]", fontsize=8, va="bottom")
    ax.set_yticks(range(len(intervals)), list(intervals))
    ax.set_ylim(-0.6, len(intervals) - 0.4)
    if truth is not None:
        ax.axvline(truth, color="k", ls="--", lw=1, label=f"truth = {truth:g}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("effect estimate (95% CI)")
    return fig


# --- scm (helper "scm"): simulator throughput --------------------------------------------------------------


def throughput_figure(
    series: dict[str, tuple[list[int], list[float]]], *, ylabel: str = "graphs / s", title: str = ""
) -> Figure:
    """One line per implementation: throughput (log scale) against the number of nodes d."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, (nodes, rates) in series.items():
        ax.plot(nodes, rates, marker="o", label=name)
        for d, rate in zip(nodes, rates, strict=True):
            label = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
            ax.annotate(label, (d, rate), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("nodes d")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --- costs (helper "costs"): cost growth against problem size ---------------------------------------------


def cost_growth_figure(
    panels: dict[str, dict[str, tuple[list[float], list[float]]]], *, xlabel: str, title: str = ""
) -> Figure:
    """One log-log panel per cost (panel key = its y label), one line per method: cost against problem size.

    On log-log axes a power law c · n^k is a straight line of slope k, so growth exponents can be read (and
    compared between methods) directly; the size ticks are the measured sizes.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.6), squeeze=False)
    names = list(dict.fromkeys(name for series in panels.values() for name in series))  # one colour per method
    for ax, (ylabel, series) in zip(axes[0], panels.items(), strict=True):
        sizes: set[float] = set()
        for name, (xs, ys) in series.items():
            if xs:
                ax.plot(xs, ys, marker="o", label=name, color=f"C{names.index(name)}")
                sizes.update(xs)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted(sizes)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        # Plain numbers on the y axis; label the minor ticks too when the data span little more than a decade.
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        low, high = ax.get_ylim()
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if high < 20 * low else matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- dml sensitivity and heterogeneity (helper "dml-cores") ------------------------------------------------


def sensitivity_contour_figure(
    cf_y: Any,
    cf_d: Any,
    bound: Any,
    *,
    null_hypothesis: float = 0.0,
    scenario: tuple[float, float] | None = None,
    benchmarks: dict[str, tuple[float, float]] | None = None,
    title: str = "bound on the effect under omitted confounding",
) -> Figure:
    """Contours of a sensitivity bound over cf_d (x) × cf_y (y); bound[i, j] is at cf_y[i], cf_d[j].

    The null's contour is drawn bold: confounding beyond it (up and right) overturns the conclusion. Observed
    covariate groups benchmarked as if omitted are marked by name, so a reader can ask "would a confounder as
    strong as these change the answer?".
    """
    import numpy as np

    values = np.asarray(bound, dtype=float)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    filled = ax.contourf(cf_d, cf_y, values, levels=20, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="bound")
    lines = ax.contour(cf_d, cf_y, values, levels=8, colors="white", linewidths=0.6)
    ax.clabel(lines, fontsize=7, fmt="%.3g")
    if values.min() < null_hypothesis < values.max():
        ax.contour(cf_d, cf_y, values, levels=[null_hypothesis], colors="red", linewidths=1.6)
    if scenario is not None:
        ax.plot(scenario[1], scenario[0], marker="^", color="black", ls="none", label="scenario")
    for name, (by, bd) in (benchmarks or {}).items():
        ax.plot(bd, by, marker="o", color="red", ls="none", clip_on=False, zorder=5)
        ax.annotate(name, (bd, by), textcoords="offset points", xytext=(4, 4), fontsize=8, color="red")
    ax.set_xlabel("cf_d (gain in the Riesz representer's variance)")
    ax.set_ylabel("cf_y (share of outcome residual variance)")
    ax.set_title(f"{title}\n(red: bound = {null_hypothesis:g})", fontsize=9)
    if scenario is not None:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def group_effects_figure(
    names: Any,
    estimate: Any,
    ci_low: Any,
    ci_high: Any,
    *,
    overall: float | None = None,
    truth: Any = None,
    title: str = "group average effects (95% CI)",
) -> Figure:
    """One row per group (or BLP coefficient): estimate with its CI, the overall effect as a dashed line,
    and the true values as crosses when a simulator knows them."""
    import numpy as np

    est, low, high = (np.asarray(a, dtype=float) for a in (estimate, ci_low, ci_high))
    rows = np.arange(len(est))
    fig, ax = plt.subplots(figsize=(5.0, 0.8 + 0.45 * len(est)))
    ax.errorbar(est, rows, xerr=[est - low, high - est], fmt="o", capsize=4, label="estimate")
    if truth is not None:
        ax.plot(np.asarray(truth, dtype=float), rows, "kx", label="truth")
    if overall is not None:
        ax.axvline(overall, color="grey", ls="--", lw=1, label=f"overall = {overall:.3g}")
    ax.set_yticks(rows, [str(n) for n in names])
    ax.set_ylim(-0.6, len(est) - 0.4)
    ax.set_xlabel("effect")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --- discovery (helper "pfn-bench"): reliability of edge probabilities ---------------------------------------


def reliability_figure(curves: dict[str, tuple[Any, Any, Any]], title: str = "edge probability reliability") -> Figure:
    """Reliability diagram: observed edge rate against mean predicted probability per bin, one line per
    curve name -> (confidence, rate, count) from `metrics.reliability`; the diagonal is perfect calibration.
    A lower panel shows how many pairs fall in each bin (log scale)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, (confidence, rate, count) in curves.items():
        used = count > 0
        top.plot(confidence[used], rate[used], marker="o", label=name)
        bottom.plot(confidence[used], count[used], marker=".", label=name)
    top.set_ylabel("observed edge rate")
    top.set_title(title)
    top.legend(fontsize=7)
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted edge probability")
    bottom.set_ylabel("pairs")
    fig.tight_layout()
    return fig
