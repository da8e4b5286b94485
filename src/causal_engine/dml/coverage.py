"""Coverage studies of the analyses after the estimate, on the video simulator where the truth is known.

- `sensitivity`: the simulator hides a confounder from the frames (`data.hidden_confounder_strength` = c, at
  c = 1 as strong as the brightness). Per replicate one `task=crossfit` run benchmarks the brightness
  (`dml.sensitivity.benchmark=[brightness]`) and reports the bounds an omitted confounder that strong would
  give (`dml/sensitivity/benchmark/...`, at ρ = 1); the bounds at the benchmark's own ρ are recomputed from
  the saved folds beside them. Over replicates: the plain CI should under-cover the true ATE, the benchmarked
  bounds' CI should cover it at c = 1, and at c = 2 (a confounder twice the benchmark) it should not (the
  bounds are not vacuous).
- `gate`: heterogeneous effects (`data.heterogeneous=true`, τ = 1 + 0.5·u_size); the GATEs of the size's
  terciles (`dml.gate.groups=size dml.gate.quantiles=3`) against each group's true mean effect, pooled over
  groups and per group.

Both run `experiment=jepa_dml` with `dml.representation=oracle` (the simulator's visible confounders, named, as
covariates) and `dml.learner=auto` with `dml/tabular=forest` (random forests for covariates: the learners the
documented studies ran with) unless overrides say otherwise; the overlap guard is off, as in the benchmark, so every
replicate reports. Coverage rates come with their exact (Clopper–Pearson) binomial interval.
`scripts/bench_dml_coverage.py` is the command line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from scipy.stats import binomtest

from causal_engine.dml.benchmark import QUIET, pool_worker_init
from causal_engine.dml.sensitivity import Benchmark, benchmark_bounds
from causal_engine.train import compose

STUDIES = ("sensitivity", "gate")
# The visible confounder the hidden one is benchmarked against (coefficient 1 in the treatment logit and the
# baseline outcome, as the hidden one at strength 1), and the covariate whose terciles the GATEs are for.
BENCHMARK_GROUP = "brightness"
GATE_COLUMN = "size"
GATE_QUANTILES = 3
BASE = [
    "experiment=jepa_dml", *QUIET, "dml.max_clipped_share=1.0", "dml.representation=oracle", "dml.learner=auto",
    "dml/tabular=forest",
]  # fmt: skip


def study_overrides(study: str, strength: float | None) -> list[str]:
    """The overrides one replicate of `study` adds to `BASE` (the hidden confounder's `strength` for sensitivity)."""
    if study == "sensitivity":
        return [f"data.hidden_confounder_strength={strength}", f"dml.sensitivity.benchmark=[{BENCHMARK_GROUP}]"]
    if study == "gate":
        return ["data.heterogeneous=true", f"dml.gate.groups={GATE_COLUMN}", f"dml.gate.quantiles={GATE_QUANTILES}"]
    raise ValueError(f"study must be one of {STUDIES}, not {study!r}")


def replicate(study: str, seed: int, strength: float | None, overrides: list[str], workdir: Path) -> dict[str, Any]:
    """One `task=crossfit` run of `study` on the data drawn with `seed`: its run-level metrics (per-fold ones
    left out), wall time and, for `gate`, each group's true mean effect."""
    from hydra.utils import instantiate

    from causal_engine.dml.crossfit import crossfit
    from causal_engine.dml.heterogeneity import quantile_groups
    from causal_engine.dml.simulate import CONFOUNDERS, simulate_videos

    cfg = _config(study, seed, strength, overrides, workdir)
    start = time.time()
    metrics = crossfit(cfg)
    record: dict[str, Any] = {
        "study": study,
        "seed": seed,
        "strength": strength,
        "overrides": overrides,
        "seconds": time.time() - start,
        "metrics": {k: v for k, v in metrics.items() if "/fold" not in k},
    }
    if study == "gate":
        truth = simulate_videos(**instantiate(cfg.data).sim_kwargs)
        # The run groups the covariate as the nuisances saw it (float32); the same cut points here.
        column = truth.confounders[:, CONFOUNDERS.index(GATE_COLUMN)].astype(np.float32).astype(np.float64)
        labels, _ = quantile_groups(column, GATE_QUANTILES)
        record["true_gate"] = {str(g): float(truth.tau[labels == g].mean()) for g in np.unique(labels)}
    if study == "sensitivity":
        record["bounds"] = scenario_bounds(cfg, record["metrics"])
    return record


def _config(study: str, seed: int, strength: float | None, overrides: list[str], workdir: Path) -> DictConfig:
    name = f"{study}_c{strength}_seed{seed}" if study == "sensitivity" else f"{study}_seed{seed}"
    return compose([*BASE, f"seed={seed}", *study_overrides(study, strength), *overrides], workdir / name)


def scenario_bounds(cfg: DictConfig, metrics: dict[str, float]) -> dict[str, list[float]]:
    """[θ_lower, θ_upper, ci_low, ci_high] at the benchmarked cf_y and cf_d, with ρ = 1 (`rho_one`, what the run
    reports) and with the benchmark's own ρ (`benchmark_rho`, DoubleML's workflow), from the run's saved folds:
    nothing is refit."""
    from causal_engine.dml.analyses import sensitivity_reps
    from causal_engine.dml.crossfit import run_crossfit

    out = run_crossfit(cfg)  # every fold is in the run's store: this only reloads them
    reps = sensitivity_reps(cfg.dml, out.sample, out.predictions)
    bench = Benchmark(*(metrics[f"dml/sensitivity/benchmark/{k}"] for k in ("cf_y", "cf_d", "rho", "delta_theta")))
    level = cfg.dml.level
    return {
        "rho_one": list(benchmark_bounds(reps, bench, 1.0, level)),
        "benchmark_rho": list(benchmark_bounds(reps, bench, abs(bench.rho), level)),
    }


def fill_scenarios(records: list[dict[str, Any]], out: Path) -> None:
    """Add `bounds` (`scenario_bounds`) to the sensitivity records of `out` that lack it, from their saved runs."""
    for r in records:
        if r["study"] == "sensitivity" and "bounds" not in r:
            cfg = _config(r["study"], r["seed"], r["strength"], r["overrides"], out / "runs")
            r["bounds"] = scenario_bounds(cfg, r["metrics"])


def load_records(out: Path) -> list[dict[str, Any]]:
    """The records of a study's `--out OUT` (`OUT/replicates.jsonl`, one JSON object a line)."""
    path = out / "replicates.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def run_study(
    study: str,
    seeds: Sequence[int],
    strengths: Sequence[float | None],
    overrides: list[str],
    out: Path,
    *,
    workers: int = 1,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Every (seed, strength) replicate not yet in `out/replicates.jsonl`, `workers` at a time, each appended as it
    finishes (an interrupted study resumes where it stood); returns all records. Records drawn with other
    overrides are refused rather than mixed in."""
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(out)
    other = sorted({tuple(r["overrides"]) for r in records if r["study"] != study or r["overrides"] != overrides})
    if other:
        raise SystemExit(f"{out} holds replicates of another study or overrides ({other}); use another --out")
    done = {(r["seed"], r["strength"]) for r in records}
    todo = [(seed, strength) for strength in strengths for seed in seeds if (seed, strength) not in done]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=pool_worker_init,
                             initargs=(threads,)) as pool:  # fmt: skip
        jobs = [pool.submit(replicate, study, seed, strength, overrides, out / "runs") for seed, strength in todo]
        for job in as_completed(jobs):
            record = job.result()
            records.append(record)
            with (out / "replicates.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            m = record["metrics"]
            where = f"seed {record['seed']}" + (f" strength {record['strength']:g}" if study == "sensitivity" else "")
            print(f"{where}: estimate {m['dml/ate']:.3f} [{m['dml/ci_low']:.3f}, {m['dml/ci_high']:.3f}] "
                  f"({record['seconds']:.0f} s)", flush=True)  # fmt: skip
    return records


def rate(hits: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(share, low, high): the share of true values in `hits` and its exact (Clopper–Pearson) binomial interval."""
    hits = np.asarray(hits, dtype=bool)
    ci = binomtest(int(hits.sum()), len(hits)).proportion_ci(confidence_level=level, method="exact")
    return float(hits.mean()), float(ci.low), float(ci.high)


def rate_cell(hits: np.ndarray) -> str:
    """A coverage cell: share [exact 95 % interval] (hits/n)."""
    share, low, high = rate(hits)
    return f"{share:.3f} [{low:.3f}, {high:.3f}] ({int(np.sum(hits))}/{len(hits)})"


def summarise_sensitivity(records: list[dict[str, Any]]) -> str:
    """Per hidden-confounder strength: the plain CI's coverage of the true ATE, the brightness benchmark's
    strengths, and the coverage of the bounds (and of their CI) at those strengths, with ρ = 1 and with the
    benchmark's own ρ, as Markdown."""
    lines = [
        "| hidden strength c | replicates | bias (SE) | plain CI covers | benchmark cf_y | cf_d | rho "
        "| bounds hold the truth | bounds' CI covers | mean bounds' CI width "
        "| bounds' CI covers at the benchmark's rho |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strength in sorted({r["strength"] for r in records}):
        rs = [r for r in records if r["strength"] == strength]
        ms = [r["metrics"] for r in rs]
        truth = np.array([m["dml/true_ate"] for m in ms])
        bias = np.array([m["dml/ate"] for m in ms]) - truth
        bench = {k: np.mean([m[f"dml/sensitivity/benchmark/{k}"] for m in ms]) for k in ("cf_y", "cf_d", "rho")}
        plain = np.array([m["dml/ci_low"] <= t <= m["dml/ci_high"] for m, t in zip(ms, truth, strict=True)])
        one, own = (np.array([r["bounds"][key] for r in rs]) for key in ("rho_one", "benchmark_rho"))  # [R, 4]
        held = (one[:, 0] <= truth) & (truth <= one[:, 1])
        ci = (one[:, 2] <= truth) & (truth <= one[:, 3])
        ci_own = (own[:, 2] <= truth) & (truth <= own[:, 3])
        lines.append(
            f"| {strength:g} | {len(ms)} | {bias.mean():+.3f} ({bias.std(ddof=1) / np.sqrt(len(bias)):.3f}) | "
            f"{rate_cell(plain)} | {bench['cf_y']:.3f} | {bench['cf_d']:.3f} | {bench['rho']:+.2f} | "
            f"{rate_cell(held)} | {rate_cell(ci)} | {np.mean(one[:, 3] - one[:, 2]):.3f} | {rate_cell(ci_own)} |"
        )
    return "\n".join(lines)


def summarise_gate(records: list[dict[str, Any]]) -> str:
    """GATE CI coverage of each group's true mean effect, pooled over groups and per group, as Markdown."""
    groups = sorted(records[0]["true_gate"])
    hits = {g: [] for g in groups}
    rows = {g: [] for g in groups}
    for r in records:
        m = r["metrics"]
        for g in groups:
            truth = r["true_gate"][g]
            hits[g].append(m[f"dml/gate/{g}/ci_low"] <= truth <= m[f"dml/gate/{g}/ci_high"])
            rows[g].append([m[f"dml/gate/{g}"] - truth, truth, m[f"dml/gate/{g}/se"]])
    pooled = np.concatenate([hits[g] for g in groups])
    _, low, high = rate(pooled)
    lines = [
        f"Pooled over {len(groups)} groups × {len(records)} replicates: coverage {rate_cell(pooled)}; "
        f"0.95 is {'inside' if low <= 0.95 <= high else 'outside'} the binomial 95 % interval.",
        "",
        "| group | true GATE (mean) | bias (SE) | mean SE | coverage |",
        "|---|---|---|---|---|",
    ]
    for g in groups:
        a = np.array(rows[g])  # [replicates, 3]
        lines.append(
            f"| {GATE_COLUMN} {g} | {a[:, 1].mean():.3f} | {a[:, 0].mean():+.3f} "
            f"({a[:, 0].std(ddof=1) / np.sqrt(len(a)):.3f}) | {a[:, 2].mean():.3f} | {rate_cell(np.array(hits[g]))} |"
        )
    return "\n".join(lines)


def summarise(records: list[dict[str, Any]]) -> str:
    """The study's Markdown summary with the mean wall time per replicate."""
    if not records:
        raise SystemExit("no replicates to summarise")
    study = records[0]["study"]
    table = summarise_sensitivity(records) if study == "sensitivity" else summarise_gate(records)
    secs = [r["seconds"] for r in records]
    return f"{table}\n\nWall time per replicate: mean {np.mean(secs):.0f} s (max {np.max(secs):.0f} s)."
