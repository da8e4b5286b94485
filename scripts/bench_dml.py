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
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from causal_engine.dml.benchmark import (
    BASELINES,
    compare,
    config_fingerprint,
    figure,
    load_replicates,
    pool_worker_init,
    replicate,
    summarise,
    worker_init,
)

REPO = Path(__file__).resolve().parents[1]


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
    worker_init(args.threads)
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
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=pool_worker_init,
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
