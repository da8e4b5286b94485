"""Benchmark JEPA-DML against baselines over simulated replicates (default config, true ATE 1.0).

Estimators per replicate (same data, same fold plan where it applies):
  jepa_dml      cross-fitted DML, a fresh JEPA + TarNet/propensity nuisances per fold (`experiment=jepa_dml`)
  naive         difference in means with its two-sample SE
  pixel_dml     the same nuisances on raw flattened pixels (no JEPA)
  doubleml_rf   DoubleMLIRM with random forests on raw pixels
  oracle_dml    the same nuisances on the true confounders U

Writes outputs/bench_dml/{replicates.jsonl, results.md, results.png} and prints the table. Replicates are
appended as they finish, so an interrupted run keeps its results (rerun with --resume to continue). Stop a run
with Ctrl-C or by killing it (`kill PID`); its worker processes exit within a second of their parent.

    nice -n 10 .venv/bin/python scripts/bench_dml.py --replicates 30 --workers 2

`--compare A B` runs nothing: it pairs two benchmarks' replicates by seed (same seeds draw the same data and folds)
and prints each estimator's estimate in B minus A, the one fair way to tell whether a setting helped. A setting
of the JEPA or its nuisances needs no new baselines: `--jepa-only` skips the three that do not depend on it
(about a third of a replicate's time), and `--compare` pairs what both benchmarks ran:

    .venv/bin/python scripts/bench_dml.py --compare outputs/bench_dml outputs/bench_dml_max
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
ESTIMATORS = ("jepa_dml", "naive", "pixel_dml", "doubleml_rf", "oracle_dml")
# What `--jepa-only` skips: estimators that do not depend on the JEPA or its settings (paired re-runs reuse theirs).
BASELINES = ("pixel_dml", "doubleml_rf", "oracle_dml")
# A run's settings without its logging: no logger, no progress bars (fits run side by side, or by the hundred).
QUIET = ["~logger", "~callbacks.progress_bar", "~callbacks.lr_monitor", "+trainer.enable_progress_bar=false"]


def _compose(overrides: list[str], output_dir: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from causal_engine.run import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.root_dir = str(REPO)
    return cfg


def config_fingerprint(overrides: list[str]) -> str:
    """What a replicate depends on besides its seed: the composed data, model and DML settings."""
    from causal_engine.dml.crossfit import fold_fingerprint

    return fold_fingerprint(_compose(["experiment=jepa_dml", "seed=0", *overrides], Path("/nonexistent")))


def load_replicates(out: Path) -> list[dict]:
    """The replicate records of a `--out OUT` benchmark (`OUT/replicates.jsonl`, one JSON object a line)."""
    return [json.loads(line) for line in (out / "replicates.jsonl").read_text().splitlines()]


def _row(result) -> dict[str, float]:
    return {
        "estimate": result.estimate,
        "se": result.se,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "clipped_share": result.clipped_share,
    }


def replicate(
    seed: int, overrides: list[str], workdir: Path, rf_trees: int, baselines: bool = True
) -> dict[str, dict[str, float]]:
    """All five estimators on one simulated data set drawn with `seed` (JEPA-DML and naive only without
    `baselines`)."""
    from dataclasses import replace

    from doubleml import DoubleMLData, DoubleMLIRM
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from causal_engine.dml.crossfit import run_crossfit
    from causal_engine.train import with_output_dir

    cfg = _compose(
        # The run's own settings (the best-validation checkpoint selects each nuisance) without its logging:
        # no logger, no progress bars (replicates run side by side). The overlap guard stops a user's run;
        # here every estimator must report, so it is off (clipped shares are recorded instead).
        [
            "experiment=jepa_dml",
            f"seed={seed}",
            *QUIET,
            "dml.max_clipped_share=1.0",
            *overrides,
        ],
        workdir / f"seed{seed}",
    )
    rows: dict[str, dict[str, float]] = {}
    start = time.time()
    out = run_crossfit(cfg)
    rows["jepa_dml"] = {
        **_row(out.result),
        "seconds": time.time() - start,
        "probe_r2": float(np.mean([r.probe_r2 for r in out.records])),
    }
    z = 1.959963984540054
    rows["naive"] = {
        "estimate": out.naive,
        "se": out.naive_se,
        "ci_low": out.naive - z * out.naive_se,
        "ci_high": out.naive + z * out.naive_se,
    }
    if not baselines:
        return rows
    sample = out.sample
    pixels = sample.features.reshape(len(sample), -1)  # [N, C·T·H·W]
    # The other two cross-fitted estimators write their checkpoints beside JEPA-DML's, not into its folders.
    own = {name: with_output_dir(cfg, Path(cfg.paths.output_dir) / name) for name in ("pixel_dml", "oracle_dml")}
    rows["pixel_dml"] = _row(run_crossfit(own["pixel_dml"], replace(sample, features=pixels, confounders=None)).result)
    u = torch.from_numpy(sample.confounders).float()
    rows["oracle_dml"] = _row(run_crossfit(own["oracle_dml"], replace(sample, features=u, confounders=None)).result)
    data = DoubleMLData.from_arrays(pixels.numpy().astype(np.float64), sample.outcome, sample.treatment)
    irm = DoubleMLIRM(
        data,
        ml_g=RandomForestRegressor(rf_trees, max_features="sqrt", min_samples_leaf=5, random_state=seed, n_jobs=1),
        ml_m=RandomForestClassifier(rf_trees, max_features="sqrt", min_samples_leaf=5, random_state=seed, n_jobs=1),
        n_folds=cfg.dml.k_folds,
        score="ATE",
        draw_sample_splitting=False,
    )
    irm.set_sample_splitting([(f.train, f.test) for f in out.plan[0]])
    irm.fit()
    low, high = irm.confint(level=0.95).to_numpy()[0]
    rows["doubleml_rf"] = {
        "estimate": float(irm.coef[0]),
        "se": float(irm.se[0]),
        "ci_low": float(low),
        "ci_high": float(high),
    }
    return rows


def summarise(records: list[dict], truth: float = 1.0) -> tuple[str, dict[str, dict[str, float]]]:
    from causal_engine.metrics import interval_summary

    stats = {}
    for name in _present(records):
        vals = [r["estimators"][name] for r in records]
        s = interval_summary(
            np.array([v["estimate"] for v in vals]),
            np.array([v["ci_low"] for v in vals]),
            np.array([v["ci_high"] for v in vals]),
            truth,
        )
        s["mean_se"] = float(np.mean([v["se"] for v in vals]))
        s["clipped"] = float(np.mean([v.get("clipped_share", 0.0) for v in vals]))
        # Monte Carlo error of the benchmark itself: the bias's SE over replicates, the coverage's binomial SE.
        s["bias_mcse"] = float(np.std([v["estimate"] for v in vals], ddof=1) / np.sqrt(len(vals)))
        s["coverage_mcse"] = float(np.sqrt(s["coverage"] * (1 - s["coverage"]) / len(vals)))
        stats[name] = s
    lines = [
        f"Replicates: {len(records)} (true ATE {truth}); 95 % CIs; ± is the Monte Carlo SE of the benchmark.",
        "",
        "| estimator | bias | RMSE | coverage | mean CI width | mean SE | clipped share |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in stats.items():
        lines.append(
            f"| {name} | {s['bias']:+.3f} ± {s['bias_mcse']:.3f} | {s['rmse']:.3f} | {s['coverage']:.2f} ± "
            f"{s['coverage_mcse']:.2f} | {s['ci_width']:.3f} | {s['mean_se']:.3f} | {s['clipped']:.3f} |"
        )
    jepa = stats["jepa_dml"]
    targets = [
        ("coverage in [0.90, 0.99]", f"{jepa['coverage']:.2f}", 0.90 <= jepa["coverage"] <= 0.99),
        ("abs(bias) < mean SE / 3", f"{abs(jepa['bias']):.3f} vs {jepa['mean_se'] / 3:.3f}",
         abs(jepa["bias"]) < jepa["mean_se"] / 3),
    ]  # fmt: skip
    if "oracle_dml" in stats:
        oracle = stats["oracle_dml"]
        targets.append(("RMSE ≤ 1.5 × oracle", f"{jepa['rmse']:.3f} vs {1.5 * oracle['rmse']:.3f}",
                        jepa["rmse"] <= 1.5 * oracle["rmse"]))  # fmt: skip
    else:
        targets.append(("RMSE ≤ 1.5 × oracle", "oracle_dml not run", None))
    if {"pixel_dml", "doubleml_rf"} <= stats.keys():
        pixel, rf = stats["pixel_dml"]["rmse"], stats["doubleml_rf"]["rmse"]
        targets.append(("RMSE < pixel_dml and doubleml_rf", f"{jepa['rmse']:.3f} vs {pixel:.3f}, {rf:.3f}",
                        jepa["rmse"] < min(pixel, rf)))  # fmt: skip
    else:
        targets.append(("RMSE < pixel_dml and doubleml_rf", "baselines not run", None))
    verdict = {True: "yes", False: "no", None: "n/a"}
    lines += ["", "| JEPA-DML target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict[ok]} |" for name, value, ok in targets]
    secs = [r["estimators"]["jepa_dml"]["seconds"] for r in records]
    probe = [r["estimators"]["jepa_dml"]["probe_r2"] for r in records]
    lines += [
        "",
        f"JEPA-DML wall time per run: mean {np.mean(secs):.0f} s (max {np.max(secs):.0f} s); "
        f"held-out linear-probe R² of U from the JEPA embeddings: {np.mean(probe):.2f}.",
    ]
    return "\n".join(lines), stats


def _present(records: list[dict]) -> list[str]:
    """The estimators every replicate in `records` ran, in table order (`--jepa-only` runs skip the baselines)."""
    return [name for name in ESTIMATORS if all(name in r["estimators"] for r in records)]


def compare(first: list[dict], second: list[dict], truth: float = 1.0) -> str:
    """Per estimator, the second benchmark's estimate minus the first's over the seeds both ran (paired: the same
    seed draws the same data and fold plan), as a Markdown table with the difference's SE over replicates."""
    a, b = ({r["seed"]: r["estimators"] for r in recs} for recs in (first, second))
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        raise SystemExit(f"the benchmarks share {len(seeds)} seed(s); pairing needs at least 2")
    lines = [f"{len(seeds)} paired replicates (seeds {seeds[0]}–{seeds[-1]}); second minus first", "",
             "| estimator | mean difference | SE | lower in second | second's mean abs error − first's |",
             "|---|---|---|---|---|"]  # fmt: skip
    both = set(_present(second))
    for name in [n for n in _present(first) if n in both]:
        x = np.array([a[s][name]["estimate"] for s in seeds])
        y = np.array([b[s][name]["estimate"] for s in seeds])
        d, gain = y - x, np.abs(y - truth).mean() - np.abs(x - truth).mean()
        lines.append(f"| {name} | {d.mean():+.4f} | {d.std(ddof=1) / np.sqrt(len(d)):.4f} | "
                     f"{int((d < 0).sum())}/{len(d)} | {gain:+.4f} |")  # fmt: skip
    return "\n".join(lines)


def figure(records: list[dict], path: Path, truth: float = 1.0) -> None:
    from causal_engine.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = _present(records)
    for i, name in enumerate(names):
        est = [r["estimators"][name]["estimate"] for r in records]
        ax.scatter(est, np.full(len(est), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(est)), s=12)
    ax.axvline(truth, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("ATE estimate per replicate (truth dashed)")
    save_figure(fig, path)


def _worker_init(threads: int) -> None:
    """Each process: `threads` torch threads, no per-fit log lines."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)
    logging.disable(logging.WARNING)


def _pool_worker_init(threads: int) -> None:
    """A pool worker: `_worker_init`, and exit as soon as the parent is gone. A spawned worker otherwise outlives
    a parent killed by a signal it cannot catch (SIGKILL, or SIGTERM from `kill`/`pkill`) and goes on computing
    a replicate nobody will record, slowing whatever runs next."""
    _worker_init(threads)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # a dead parent's children are re-parented
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--rf-trees", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="replicates run at once, one process each")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_dml")
    parser.add_argument("--resume", action="store_true", help="keep replicates already in replicates.jsonl")
    parser.add_argument("--jepa-only", action="store_true", help=f"skip {', '.join(BASELINES)} (for --compare)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="pair two --out folders; no runs")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. dml.jepa_epochs=10")
    args = parser.parse_args()
    if args.compare:
        print(compare(*map(load_replicates, args.compare)))
        return
    _worker_init(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "replicates.jsonl"
    records = load_replicates(args.out) if args.resume and store.exists() else []
    if not args.resume:
        store.write_text("")
    # A replicate belongs to this run only if it was drawn with the same overrides *and* the same defaults
    # (conf/ may have changed since): compare the composed settings' fingerprint, not just the command line.
    fingerprint = config_fingerprint(args.overrides)
    setting = (args.overrides, fingerprint, not args.jepa_only)
    stale = [
        r["seed"]
        for r in records
        if (r["overrides"], r.get("config"), set(BASELINES) <= r["estimators"].keys()) != setting
    ]
    if stale:
        sys.exit(
            f"{store} holds replicates {stale} run with other overrides, defaults or --jepa-only than now "
            f"({args.overrides}); resume with the same settings or use another --out"
        )
    done = {r["seed"] for r in records}
    todo = [seed for seed in range(args.first_seed, args.first_seed + args.replicates) if seed not in done]
    # One process per replicate slot, each on `--threads` torch threads: replicates are independent, and
    # finished ones are appended as they arrive (in any order), so an interrupted run resumes where it stood.
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_pool_worker_init,
                             initargs=(args.threads,)) as pool:  # fmt: skip
        jobs = {
            pool.submit(replicate, seed, args.overrides, args.out / "runs", args.rf_trees, not args.jepa_only): seed
            for seed in todo
        }
        for job in as_completed(jobs):
            seed, rows = jobs[job], job.result()
            record = {"seed": seed, "overrides": args.overrides, "config": fingerprint, "estimators": rows}
            records.append(record)
            with store.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(
                f"seed {seed}: " + ", ".join(f"{k} {v['estimate']:.3f}±{v['se']:.3f}" for k, v in rows.items()),
                flush=True,
            )
    records.sort(key=lambda r: r["seed"])
    table, _ = summarise(records)
    # What was run (not a recommended prefix such as `nice`, which the process cannot see).
    command = ".venv/bin/python scripts/bench_dml.py " + " ".join(sys.argv[1:])
    (args.out / "results.md").write_text(f"# bench_dml\n\n`{command}`\n\n{table}\n")
    figure(records, args.out / "results.png")
    print(table)


if __name__ == "__main__":
    main()
