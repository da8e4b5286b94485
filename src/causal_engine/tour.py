"""Closing screens: a single run's key metrics and outputs, and the tour's one headline per stop.

`run_summary` ends every single run (`causal-engine ...` without `-m`). The tour: each stop
(`conf/tour/*.yaml`) is an experiment preset plus a `tour_headline`, a format string over the stop's own
metrics (`"ATE {dml/ate:.3f} ..."`). When the multirun ends, a Hydra callback (`TourSummary`) reads every
job's `metrics.json` and resolved config, fills in the headlines, and prints them with where the
TensorBoard logs and figures are.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

log = logging.getLogger(__name__)


# Metric families left out of a run's closing screen: training curves, and `hp/` copies of test metrics.
_NOT_KEY = ("hp/", "train/", "val/", "epoch", "lr-")
MAX_SUMMARY_ROWS = 16


def _console(console: Console | None) -> Console:
    # Piped or logged output gets 120 columns instead of Rich's 80, so lines stay whole.
    return console or Console(width=None if sys.stdout.isatty() else 120)


def run_summary(metrics: dict[str, Any], output_dir: Path, console: Console | None = None) -> list[str]:
    """Print a single run's closing screen: its key metrics (test, estimates, answers) and where its outputs
    are; return the metric names shown. Runs with only training metrics show those."""
    console = _console(console)
    key = sorted(k for k in metrics if not k.startswith(_NOT_KEY)) or sorted(metrics)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("metric", style="cyan", no_wrap=True)
    table.add_column("value", justify="right")
    for name in key[:MAX_SUMMARY_ROWS]:
        value = metrics[name]
        table.add_row(name, f"{value:.4g}" if isinstance(value, int | float) else escape(str(value)))
    console.print(Panel(table, title="causal-engine: done", expand=False))
    console.print(f"metrics:     all {len(metrics)} in {output_dir / 'metrics.json'}")
    console.print(f"outputs:     {output_dir}/ (config_resolved.yaml, checkpoints, figures)")
    console.print(f"TensorBoard: tensorboard --logdir {output_dir}")
    return key[:MAX_SUMMARY_ROWS]


def headline(template: str, metrics: dict[str, Any]) -> str:
    """`template` filled from `metrics`; a missing metric is named instead of failing the summary."""
    try:
        return template.format_map(metrics)
    except (KeyError, ValueError, TypeError) as error:
        return f"(headline needs metric {error}; the job wrote {sorted(metrics)[:8]}...)"


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One entry per job directory: stop name, headline, metrics, directory, status."""
    stops = []
    for config_file in sorted(sweep_dir.glob("*/.hydra/config.yaml"), key=lambda p: int(p.parts[-3])):
        job_dir = config_file.parent.parent
        resolved = job_dir / "config_resolved.yaml"
        cfg = yaml.safe_load((resolved if resolved.exists() else config_file).read_text()) or {}
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        name = cfg.get("tags") or job_dir.name
        text = headline(cfg.get("tour_headline") or "", metrics) if metrics is not None else "FAILED (see its log)"
        stops.append({"name": name, "headline": text, "dir": job_dir, "ok": metrics is not None})
    return stops


def render(sweep_dir: Path, console: Console | None = None) -> list[dict[str, Any]]:
    """Print the tour's summary screen for the multirun in `sweep_dir`; return what was printed."""
    console = _console(console)
    stops = collect(sweep_dir)
    table = Table(show_header=True, header_style="bold", expand=True)
    table.add_column("stop", style="cyan", no_wrap=True)
    table.add_column("headline")
    for stop in stops:
        text = escape(stop["headline"])
        table.add_row(stop["name"], text if stop["ok"] else f"[red]{text}[/red]")
    figures = sorted(p.relative_to(sweep_dir).as_posix() for p in sweep_dir.glob("*/**/*.png"))
    where = [
        f"runs:        {sweep_dir}/<job>/ (metrics.json, config, checkpoints)",
        f"TensorBoard: tensorboard --logdir {sweep_dir}",
        f"figures:     {len(figures)} PNG, e.g. " + ", ".join(figures[:4]),
        f"report:      python scripts/report.py {sweep_dir}",
    ]
    console.print(
        Panel(
            table, title="causal-engine tour", subtitle=f"{sum(s['ok'] for s in stops)} of {len(stops)} stops completed"
        )
    )
    console.print("\n".join(where))
    return stops


class TourSummary(Callback):
    """Hydra callback: print the tour's summary screen when the multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        render(Path(config.hydra.sweep.dir))
