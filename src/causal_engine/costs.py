"""Cost growth of the three systems: time and peak memory against problem size, for the SCM prior, PFN inference
next to PC and GES, and the JEPA-DML cross-fit; the page (docs/benchmarks.md) with its tables, fitted growth
exponents, one sentence per series and log-log plots. `scripts/bench_costs.py` is its command line.

Every point runs in its own process (`profiling.PointRunner`), forked from a server process that imported torch,
Lightning and the package once, so a point pays no import time and its memory is its own. Peak memory = the
point process's peak resident set (Linux VmHWM, reset through /proc/self/clear_refs just before the measured
calls) minus its resident set at that moment, i.e. what the measured work added on top of the imported
libraries and its inputs. Times are the best of repeated calls (timeit's convention) for calls that take less
than `min_seconds`, else one call. PC and GES stop at the first size whose single call exceeds the baseline
limit (the process is killed); larger sizes are not attempted.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from causal_engine import plots
from causal_engine.profiling import PointRunner, format_number, growth_exponent, growth_sentence, measure
from causal_engine.scm.reference import sweep_point

# Problem sizes. "samples" = rows per regime: the observational regime and each interventional regime.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "scm_ds": (10, 20, 50, 100, 200),
        "scm_batch": 8,
        "discovery_ds": (10, 20, 50, 100),
        "samples_at_d": 100,
        "samples": (25, 50, 100, 200, 400, 800, 1600),
        "d_at_samples": 20,
        "dml_ns": (250, 500, 1000, 2000, 4000),
        "jepa_epochs": 2,
        "nuisance_epochs": 5,
        "min_seconds": 2.0,
        "baseline_limit": 60.0,
    },
    "quick": {
        "scm_ds": (10, 20),
        "scm_batch": 4,
        "discovery_ds": (10, 20),
        "samples_at_d": 50,
        "samples": (25, 50),
        "d_at_samples": 10,
        "dml_ns": (100, 200),
        "jepa_epochs": 1,
        "nuisance_epochs": 2,
        "min_seconds": 0.3,
        "baseline_limit": 20.0,
    },
}
DISCOVERY_METHODS = ("PFN", "PC", "GES")
PRELOAD = ["torch", "lightning", "hydra", "causal_engine.discovery.discover", "causal_engine.dml.crossfit"]
MEMORY_FLOOR_MB = 1.0  # below this a peak is page-granularity noise; such points are left out of memory fits


def discovery_graph(d: int, samples: int, seed: int = 0):
    """One graph of the PFN's prior with `samples` rows in the observational and in every interventional regime
    (the same graph for every method at this (d, samples))."""
    from causal_engine.discovery.data import sample_graphs
    from causal_engine.scm.prior import SeedPrior

    prior = SeedPrior(num_obs=samples, num_int_per_regime=samples)
    return sample_graphs(1, d, prior, torch.Generator().manual_seed(seed))


def pfn_net(checkpoint: str | None) -> torch.nn.Module:
    """The shipped PFN when `checkpoint` is given, else a freshly initialised MLPDeltaPFN with
    conf/model/pfn_base.yaml's net arguments (inference cost does not depend on the weights)."""
    from causal_engine.discovery.checkpoint import load_pfn

    if checkpoint is not None:
        return load_pfn(checkpoint)
    from hydra.utils import instantiate

    from causal_engine.train import compose

    cfg = compose(["model=pfn_mlp_delta"], Path("/nonexistent"))
    torch.manual_seed(0)
    return instantiate(cfg.model.net).eval()


def scm_point(d: int, batch: int, min_seconds: float) -> dict[str, float]:
    """SCM prior at the reference sample configuration: `scm.reference.sweep_point` (graphs/s, peak MB above
    baseline)."""
    point = sweep_point(d, batch, min_seconds)
    rate = point["graphs_per_s"]
    return {"seconds": 1 / rate, "peak_mb": point["peak_mb"], "graphs_per_s": rate}


def pfn_point(d: int, samples: int, checkpoint: str | None, min_seconds: float) -> dict[str, float]:
    """Seconds and peak MB of one PFN inference (`discover.predict`: edge probabilities and the graph's query
    deltas) on one graph; the net is built and warmed up on a 5-node graph before the memory baseline."""
    from causal_engine.discovery.discover import predict

    net = pfn_net(checkpoint)
    if d > net.max_nodes:
        raise ValueError(f"d={d} exceeds the net's max_nodes={net.max_nodes}")
    predict(net, discovery_graph(5, samples, seed=1))
    batch = discovery_graph(d, samples)
    return measure(lambda: predict(net, batch), min_seconds)


def baseline_point(method: str, d: int, samples: int, min_seconds: float) -> dict[str, float]:
    """Seconds and peak MB of PC or GES (causal-learn, observational rows) on the same graph as the PFN."""
    from causal_engine.discovery.baselines import ges, pc, split_graphs

    fn = {"PC": pc, "GES": ges}[method]
    fn(split_graphs(discovery_graph(5, samples, seed=1))[0])  # lazy imports and first-call set-up
    graph = split_graphs(discovery_graph(d, samples))[0]
    return measure(lambda: fn(graph), min_seconds)


def dml_point(n: int, jepa_epochs: int, nuisance_epochs: int) -> dict[str, float]:
    """Wall time and peak MB of one JEPA-DML cross-fit (`run_crossfit` on `experiment=jepa_dml`: simulate N
    videos, K = 5 folds of JEPA + outcome + propensity fits, the score) at a reduced epoch budget."""
    from causal_engine.dml.crossfit import run_crossfit
    from causal_engine.train import compose

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["experiment=jepa_dml", "callbacks=none", "~logger", f"data.n_samples={n}"]
        # A fixed nuisance budget (the ceiling, with the shortest patience) instead of fits to convergence.
        overrides += [f"dml.jepa_epochs={jepa_epochs}", "dml.learner=network", "dml.convergence.patience=1",
                      f"dml.convergence.max_epochs={nuisance_epochs}"]  # fmt: skip
        cfg = compose(overrides, Path(tmp))
        return measure(lambda: run_crossfit(cfg), min_seconds=0.0)


def preset_epochs() -> str:
    """The epochs `experiment=jepa_dml` trains with, as the page states them (the points use fewer)."""
    from causal_engine.train import compose

    dml = compose(["experiment=jepa_dml"], Path("/nonexistent")).dml
    return f"{dml.jepa_epochs} JEPA epochs and nuisance fits to convergence (patience {dml.convergence.patience})"


POINTS: dict[str, Callable[..., dict[str, float]]] = {
    "scm": scm_point,
    "pfn": pfn_point,
    "baseline": baseline_point,
    "dml": dml_point,
}


def point_runner(threads: int) -> PointRunner:
    """A runner of this module's points (`POINTS`), with the heavy imports preloaded once."""
    return PointRunner(POINTS, threads, PRELOAD)


def _row(method: str, size: int, result: dict[str, float] | None, status: str = "ok") -> dict[str, Any]:
    return {"method": method, "size": size, "status": "timeout" if result is None else status, **(result or {})}


def _log(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def measure_all(sizes: dict[str, Any], runner: PointRunner, checkpoint: str | None) -> dict[str, list[dict]]:
    """Every series of the report: {section: [rows]} with rows {method, size, status, seconds, peak_mb, ...}."""
    out: dict[str, list[dict]] = {"scm": [], "discovery_d": [], "discovery_samples": [], "dml": []}
    for d in sizes["scm_ds"]:
        result = runner("scm", d=d, batch=sizes["scm_batch"], min_seconds=sizes["min_seconds"])
        out["scm"].append(_row("SCM prior", d, result))
        _log(out["scm"][-1])
    grids = {
        "discovery_d": [(d, sizes["samples_at_d"]) for d in sizes["discovery_ds"]],
        "discovery_samples": [(sizes["d_at_samples"], s) for s in sizes["samples"]],
    }
    for section, grid in grids.items():
        size_of = (lambda d, s: d) if section == "discovery_d" else (lambda d, s: s)
        for method in DISCOVERY_METHODS:
            stopped = False
            for d, s in grid:
                if stopped:
                    out[section].append(_row(method, size_of(d, s), {}, status="not run"))
                elif method == "PFN":
                    result = runner("pfn", d=d, samples=s, checkpoint=checkpoint, min_seconds=sizes["min_seconds"])
                    out[section].append(_row(method, size_of(d, s), result))
                else:
                    limit = sizes["baseline_limit"]
                    result = runner(
                        "baseline", timeout=limit, method=method, d=d, samples=s, min_seconds=sizes["min_seconds"]
                    )
                    out[section].append(_row(method, size_of(d, s), result))
                    stopped = result is None
                _log({"section": section, **out[section][-1]})
    for n in sizes["dml_ns"]:
        result = runner("dml", n=n, jepa_epochs=sizes["jepa_epochs"], nuisance_epochs=sizes["nuisance_epochs"])
        out["dml"].append(_row("JEPA-DML cross-fit", n, result))
        _log(out["dml"][-1])
    return out


SECTIONS = {
    # section: (title, size symbol, size label, what is timed, series label in the exponent table)
    "scm": ("SCM prior throughput vs d", "d", "nodes d", "Sampling time per graph", "vs d"),
    "discovery_d": ("Discovery: PFN inference vs PC and GES, vs d", "d", "nodes d", "time per graph", "vs d"),
    "discovery_samples": (
        "Discovery: PFN inference vs PC and GES, vs samples per regime",
        "n",
        "samples per regime n",
        "time per graph",
        "vs samples per regime",
    ),
    "dml": ("JEPA-DML cross-fit vs N", "N", "rows N", "Wall time", "vs N"),
}


def _ok(rows: list[dict], method: str) -> list[dict]:
    return [r for r in rows if r["method"] == method and r["status"] == "ok"]


def _cell(row: dict, key: str, limit: float) -> str:
    if row["status"] == "timeout":
        return f"> {limit:g} s (stopped)" if key == "seconds" else "—"
    if row["status"] != "ok":
        return row["status"]
    return f"{row[key]:.3g}" if key == "seconds" else f"{row[key]:,.1f}"


def section_table(section: str, rows: list[dict], limit: float) -> str:
    """Markdown table: one row per size, seconds and peak MB for each method (wide, so methods compare)."""
    symbol = SECTIONS[section][1]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = [symbol] + (["graphs/s"] if section == "scm" else [])
    for m in methods:
        prefix = f"{m} " if len(methods) > 1 else ""
        head += [f"{prefix}s/graph" if section != "dml" else "wall s", f"{prefix}peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for size in dict.fromkeys(r["size"] for r in rows):
        cells = [str(size)]
        by_method = {r["method"]: r for r in rows if r["size"] == size}
        if section == "scm":
            cells.append(_cell(by_method["SCM prior"], "graphs_per_s", limit))
        for m in methods:
            cells += [_cell(by_method[m], "seconds", limit), _cell(by_method[m], "peak_mb", limit)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section_sentences(section: str, rows: list[dict], limit: float) -> list[str]:
    """One sentence per method: time (and, above the noise floor, memory) growth from the measured points."""
    _, symbol, _, timed, _ = SECTIONS[section]
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        ok = _ok(rows, method)
        if len(ok) < 2:
            out.append(f"{method}: fewer than two measured sizes, no growth fit.")
            continue
        what = f"{method} {timed}" if section.startswith("discovery") else timed
        text = growth_sentence(what, symbol, [r["size"] for r in ok], [r["seconds"] for r in ok], "s")
        mem = [r for r in ok if r["peak_mb"] >= MEMORY_FLOOR_MB]
        if len(mem) >= 2:
            sizes, mbs = [r["size"] for r in mem], [r["peak_mb"] for r in mem]
            k = growth_exponent(sizes, mbs)
            text += f"; peak memory ~{symbol}^{k:.1f} ({format_number(mbs[0])} → {format_number(mbs[-1])} MB)"
        else:
            text += f"; peak memory is under {MEMORY_FLOOR_MB:g} MB at {len(ok) - len(mem)} of {len(ok)} sizes (no fit)"
        stopped = [r for r in rows if r["method"] == method and r["status"] == "timeout"]
        if stopped:
            text += f"; stopped at {symbol}={stopped[0]['size']} (one call took over {limit:g} s)"
        out.append(text + ".")
    return out


def growth_table(results: dict[str, list[dict]]) -> str:
    """All fitted exponents in one table: overall least squares and between the two largest sizes."""
    lines = [
        "| series | sizes | time exponent | time exponent (two largest) | memory exponent |",
        "|---|---|---:|---:|---:|",
    ]
    for section, rows in results.items():
        symbol = SECTIONS[section][1]
        for method in dict.fromkeys(r["method"] for r in rows):
            ok = _ok(rows, method)
            if len(ok) < 2:
                continue
            sizes, secs = [r["size"] for r in ok], [r["seconds"] for r in ok]
            mem = [r for r in ok if r["peak_mb"] >= MEMORY_FLOOR_MB]
            mem_k = (
                f"{growth_exponent([r['size'] for r in mem], [r['peak_mb'] for r in mem]):.2f}"
                if len(mem) >= 2
                else "—"
            )
            lines.append(
                f"| {method}, {SECTIONS[section][4]} | {symbol} = "
                f"{', '.join(str(s) for s in sizes)} | {growth_exponent(sizes, secs):.2f} | "
                f"{growth_exponent(sizes[-2:], secs[-2:]):.2f} | {mem_k} |"
            )
    return "\n".join(lines)


def section_figure(section: str, rows: list[dict]) -> plots.Figure:
    title, _, xlabel, _, _ = SECTIONS[section]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    time_label = "seconds per graph" if section != "dml" else "wall seconds"
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {time_label: {}, "peak memory (MB)": {}}
    for m in methods:
        ok = _ok(rows, m)
        panels[time_label][m] = ([r["size"] for r in ok], [r["seconds"] for r in ok])
        mem = [r for r in ok if r["peak_mb"] >= MEMORY_FLOOR_MB]
        panels["peak memory (MB)"][m] = ([r["size"] for r in mem], [r["peak_mb"] for r in mem])
    return plots.cost_growth_figure(panels, xlabel=xlabel, title=title)


INTRO = """\
# Cost growth

How the three systems' costs grow with problem size, measured in one run of `scripts/bench_costs.py` (the
command and the machine's state are below; the plots are log-log, so a power law is a straight line).
The other benchmarks (`make bench` runs their quick modes first) measure quality; this page measures cost.

What the code leads one to expect, for reading the exponents: the SCM prior simulates
100 + 3·ceil(d/2)·100 rows per graph node by node, so time per graph grows at least like d² (rows × nodes)
and its data like d². The PFN's encoder reads every sample of every regime: (1 + 3·ceil(d/2)) regimes × n rows
× d variables, i.e. an input ∝ d²·n, standardised and ranked (sorted) element by element; then it builds
pairwise features and attention over the d nodes ([B, d, d, D] tensors). So once these dominate the fixed
per-call work, its time and memory should approach d² in the nodes and n (n log n for the ranks) in the
samples. PC's number of conditional-independence tests and GES's greedy search both grow faster than
polynomially in the worst case and depend on the graph's density; both use only the observational rows here.
The DML cross-fit trains K = 5 × (JEPA + outcome + propensity) networks for a fixed number of epochs, i.e. a
number of optimiser steps linear in N.
"""


def render(results: dict[str, list[dict]], meta: dict[str, Any], figures: dict[str, str]) -> str:
    """The whole Markdown page: intro, set-up, growth summary, then one section per series."""
    limit = meta["baseline_limit"]
    parts = [
        INTRO,
        "## Set-up",
        "",
        f"- Command: `{meta['command']}` ({meta['mode']} sizes), {meta['minutes']:.1f} min.",
        # The date and load average stay in results.json: the page states what a reader can reproduce.
        f"- Machine: {meta['cpus']} CPUs, torch {meta['torch']} with {meta['threads']} intra-op thread(s); "
        f"OMP/BLAS threads {meta['blas_threads']}. Absolute times vary between runs on shared cores; the "
        "exponents are steadier.",
        f"- PFN: {meta['pfn']}.",
        "- Peak memory: each point runs in its own process (forked from a server that imported the libraries "
        "once); the peak resident set (Linux VmHWM, reset via /proc/self/clear_refs just before the measured "
        "calls) minus the resident set at that reset, so imports and inputs are excluded. Values under "
        f"{MEMORY_FLOOR_MB:g} MB are page-granularity noise and left out of the memory fits and plots.",
        "- Time: the best of repeated calls for calls shorter than "
        f"{meta['min_seconds']:g} s (at most 200), else one call. PC and GES stop at the first size where one "
        f"call exceeds {limit:g} s (the process is killed; larger sizes are not run).",
        "",
        "## Growth exponents",
        "",
        "Least-squares slope of log cost against log size (cost ≈ c · size^k); the second column uses only the "
        "two largest sizes, where fixed per-call costs matter least.",
        "",
        growth_table(results),
        "",
    ]
    notes = {
        "scm": (
            "`causal_engine.scm.sample_batch` at the seed's sample configuration (100 observational rows, "
            "ceil(d/2) targets × 3 values × 100 rows; default prior, 2 expected parents), "
            f"{meta['scm_batch']} graphs per call (peak memory is that of one call); the point is "
            "`causal_engine.scm.reference.sweep_point`."
        ),
        "discovery_d": (
            f"One graph of the PFN's prior per call with {meta['samples_at_d']} rows per regime (observational and "
            "each of the ceil(d/2) × 3 interventional regimes). PFN: `discover.predict` (edge probabilities and "
            "the query deltas), one graph per forward pass, no batching. PC (Fisher-z, α = 0.05) and GES (BIC) "
            "from causal-learn via `discovery.baselines`, observational rows only, same graph. One graph per point "
            "(seed 0): PC's and GES's cost depends strongly on the graph and its data, so their numbers are one "
            "draw, not an average over graphs."
        ),
        "discovery_samples": (
            f"The same at d = {meta['d_at_samples']}, varying the rows per regime n (observational rows = n too, "
            "so PC and GES see n rows)."
        ),
        "dml": (
            "`causal_engine.dml.crossfit.run_crossfit` on the composed `experiment=jepa_dml` config "
            f"(`callbacks=none ~logger data.n_samples=N dml.jepa_epochs={meta['jepa_epochs']} "
            f"dml.convergence.patience=1 dml.convergence.max_epochs={meta['nuisance_epochs']}`"
            # Pages rendered from an older results.json (--render-only) do not know the preset of their day.
            + (f"; the preset's {meta['preset_dml']} take longer" if "preset_dml" in meta else "")
            + "). One run per N, including simulating the videos and the 5 folds."
        ),
    }
    for section, rows in results.items():
        title = SECTIONS[section][0]
        parts += [f"## {title}", "", notes[section], "", section_table(section, rows, limit), ""]
        parts += [f"- {s}" for s in section_sentences(section, rows, limit)]
        parts += ["", f"![{title}]({figures[section]})", ""]
    return "\n".join(parts)


def write_page(out: Path, results: dict[str, list[dict]], meta: dict[str, Any]) -> str:
    """Plots into <out without .md>/, the raw numbers as results.json beside them, then the page itself."""
    figure_dir = out.with_suffix("")
    figures = {}
    for section, rows in results.items():
        path = figure_dir / f"{section}.png"
        plots.save_figure(section_figure(section, rows), path)
        figures[section] = f"{figure_dir.name}/{path.name}"
    (figure_dir / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    text = render(results, meta, figures)
    out.write_text(text)
    return text
