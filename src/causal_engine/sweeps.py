"""Collate a Hydra multirun into Markdown tables and PNG charts: how sweeps compare variants.

    python scripts/report.py outputs/multiruns/<date>/<time>_<tag>
        [--metrics test/shd test/auroc]            columns of the tables and bars of report.png
        [--over seed]                              the swept key that repeats a variant (default seed): each
                                                   variant's mean ± SD over it (the bars too)
        [--curves val/shd val/delta_rmse]          TensorBoard scalars vs step, one panel each (curves.png)
        [--x data.n_train --y test/rmse --group model._target_]   y vs x per group, mean ± 95 % interval
                                                   over the remaining sweep keys, e.g. seeds (xy.png)

Every job directory (one per sweep point) is read: its overrides (`.hydra/overrides.yaml`), its
`metrics.json`, and its TensorBoard events. A job without `metrics.json` is listed as failed, with the
last error line of its log. When the sweep varies `--over`, a second table gives each variant (the other swept
keys) the mean ± sample SD of every metric over its finished repetitions. Writes report.md (and the PNGs) into
the multirun directory.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from causal_engine.plots import plt, save_figure


@dataclass
class Job:
    """One sweep point."""

    name: str
    path: Path
    overrides: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def label(self, keys: list[str]) -> str:
        return ", ".join(f"{k.split('.')[-1]}={self.overrides[k]}" for k in keys if k in self.overrides) or self.name


def _last_error(job_dir: Path) -> str:
    for log in sorted(job_dir.glob("*.log")):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower() or "exception" in ln.lower()]
        if errors:
            return errors[-1][-300:]
    return "no metrics.json (the job failed or is still running)"


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job directory under `sweep_dir` (any directory holding `.hydra/overrides.yaml`)."""
    jobs = []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        pairs = yaml.safe_load(overrides_file.read_text()) or []
        overrides = dict(item.split("=", 1) for item in pairs if "=" in item)
        job = Job(job_dir.relative_to(sweep_dir).as_posix() or ".", job_dir, overrides)
        metrics_file = job_dir / "metrics.json"
        if metrics_file.exists():
            raw = json.loads(metrics_file.read_text())
            job.metrics = {k: float(v) for k, v in raw.items() if isinstance(v, int | float) and v is not None}
        else:
            job.error = _last_error(job_dir)
        jobs.append(job)
    jobs.sort(key=lambda job: [int(p) if p.isdigit() else p for p in job.name.split("/")])
    if not jobs:
        raise SystemExit(f"report: no Hydra job directories (with .hydra/overrides.yaml) under {sweep_dir}")
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs."""
    keys = sorted({k for job in jobs for k in job.overrides})
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def markdown_table(jobs: list[Job], keys: list[str], metrics: list[str]) -> str:
    header = ["job", *keys, "status", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for job in jobs:
        status = "failed" if job.failed else "ok"
        cells = [job.name, *(job.overrides.get(k, "") for k in keys), status]
        cells += [_fmt(job.metrics.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [job for job in jobs if job.failed]
    if failed:
        lines += ["", "Failed jobs:", *(f"- `{job.name}` ({job.label(keys)}): {job.error}" for job in failed)]
    return "\n".join(lines) + "\n"


@dataclass
class Variant:
    """The finished jobs that differ only in the repeated key (`--over`, e.g. seed)."""

    label: str
    overrides: dict[str, str]
    jobs: list[Job]

    def values(self, metric: str) -> np.ndarray:
        """The metric of every job that reports it [runs]."""
        return np.array([job.metrics[metric] for job in self.jobs if metric in job.metrics])

    def mean_sd(self, metric: str) -> tuple[float, float]:
        """Mean and sample SD (ddof 1; NaN for fewer than two runs, NaN mean for none)."""
        values = self.values(metric)
        mean = float(np.mean(values)) if len(values) else math.nan
        return mean, float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def variants(jobs: list[Job], keys: list[str], over: str) -> list[Variant]:
    """The jobs grouped by every swept key but `over`, in the order of their first job; each variant keeps its
    finished jobs (a variant whose jobs all failed has none)."""
    others = [k for k in keys if k != over]
    groups: dict[tuple[str, ...], Variant] = {}
    for job in jobs:
        values = tuple(job.overrides.get(k, "") for k in others)
        if values not in groups:
            label = job.label(others) if others else "all"
            groups[values] = Variant(label, dict(zip(others, values, strict=True)), [])
        if not job.failed:
            groups[values].jobs.append(job)
    return list(groups.values())


def mean_sd_table(groups: list[Variant], keys: list[str], over: str, metrics: list[str]) -> str:
    """One row per variant: its keys, the runs it averages, and `mean ± sd` of each metric over `over`."""
    others = [k for k in keys if k != over]
    header = [*others, "runs", *metrics]
    lines = [f"Mean ± SD over {over}:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        cells = [group.overrides[k] for k in others] + [str(len(group.jobs))]
        cells += [f"{_fmt(m)} ± {_fmt(s)}" for m, s in (group.mean_sd(metric) for metric in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(bars: list[tuple[str, dict[str, tuple[float, float]]]], metrics: list[str], out: Path) -> Path:
    """One panel per metric: a bar per (label, {metric: (value, error)}), the error as a whisker when finite."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        values, errors = zip(*(stats.get(metric, (np.nan, np.nan)) for _, stats in bars), strict=True)
        ax.bar(range(len(bars)), values, yerr=np.nan_to_num(errors), color="tab:blue", capsize=3)
        ax.set_xticks(range(len(bars)), [label for label, _ in bars], rotation=45, ha="right", fontsize=7)
        ax.set_title(metric)
    fig.tight_layout()
    return save_figure(fig, out)


def read_scalars(job_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one TensorBoard scalar across all event files of a job (empty when absent)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps, values = [], []
    for events in sorted(job_dir.glob("**/events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            for event in acc.Scalars(tag):
                steps.append(event.step)
                values.append(event.value)
    order = np.argsort(steps, kind="stable")
    return np.asarray(steps)[order], np.asarray(values)[order]


def curves_chart(jobs: list[Job], keys: list[str], tags: list[str], out: Path) -> Path:
    fig, axes = plt.subplots(1, len(tags), figsize=(6 * len(tags), 4), squeeze=False)
    for ax, tag in zip(axes[0], tags, strict=True):
        for job in jobs:
            steps, values = read_scalars(job.path, tag)
            if len(steps):
                ax.plot(steps, values, label=job.label(keys))
        ax.set_title(f"{tag} vs step")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)


def xy_chart(jobs: list[Job], x: str, y: str, group: str | None, out: Path) -> tuple[Path, str]:
    """Mean and 95 % t-interval of `y` over repeated jobs (e.g. seeds) at each `x`, one line per `group`."""
    cells: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        if job.failed or y not in job.metrics or x not in job.overrides:
            continue
        cells[job.overrides.get(group, "all") if group else "all"][float(job.overrides[x])].append(job.metrics[y])
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = [f"| {group or 'group'} | {x} | runs | mean {y} | 95 % interval |", "|---|---|---|---|---|"]
    for name, by_x in sorted(cells.items()):
        xs = sorted(by_x)
        means = np.array([np.mean(by_x[v]) for v in xs])
        half = np.array([_t_half_width(by_x[v]) for v in xs])
        ax.errorbar(xs, means, yerr=half, marker="o", capsize=3, label=name.split(".")[-1])
        rows += [
            f"| {name} | {v:g} | {len(by_x[v])} | {m:.4g} | ± {h:.3g} |"
            for v, m, h in zip(xs, means, half, strict=True)
        ]
    ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out), "\n".join(rows) + "\n"


def _t_half_width(values: list[float]) -> float:
    """Half-width of a 95 % t-interval for the mean (0 for a single value)."""
    if len(values) < 2:
        return 0.0
    from scipy.stats import t

    return float(t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--metrics", nargs="*", default=None, help="metrics to tabulate (default: all)")
    parser.add_argument("--over", default="seed", help="swept key that repeats a variant: mean ± SD over it")
    parser.add_argument("--curves", nargs="*", default=[], help="TensorBoard scalar tags to plot vs step")
    parser.add_argument("--x", default=None, help="override key on the x axis (numeric)")
    parser.add_argument("--y", default=None, help="metric on the y axis")
    parser.add_argument("--group", default=None, help="override key that separates lines")
    args = parser.parse_args(argv)

    jobs = load_jobs(args.sweep_dir)
    keys = swept_keys(jobs)
    metrics = args.metrics or sorted({m for job in jobs for m in job.metrics})
    report = [f"# Sweep report: {args.sweep_dir}", "", markdown_table(jobs, keys, metrics)]
    if args.over in keys:
        groups = variants(jobs, keys, args.over)
        report += [mean_sd_table(groups, keys, args.over, metrics)]
        bars = [(g.label, {m: g.mean_sd(m) for m in metrics}) for g in groups if g.jobs]
    else:
        ok = [job for job in jobs if not job.failed]
        bars = [(job.label(keys), {m: (job.metrics.get(m, np.nan), np.nan) for m in metrics}) for job in ok]
    if bars and metrics:
        report += [f"![metrics]({bar_chart(bars, metrics[:6], args.sweep_dir / 'report.png').name})", ""]
    if args.curves:
        report += [f"![curves]({curves_chart(jobs, keys, args.curves, args.sweep_dir / 'curves.png').name})", ""]
    if args.x and args.y:
        png, table = xy_chart(jobs, args.x, args.y, args.group, args.sweep_dir / "xy.png")
        report += [table, f"![{args.y} vs {args.x}]({png.name})", ""]
    text = "\n".join(report)
    (args.sweep_dir / "report.md").write_text(text)
    print(text)
    return text
