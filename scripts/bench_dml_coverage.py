"""Coverage of the DML analyses on simulated videos (`causal_engine.dml.coverage` says what each study measures).

    # sensitivity bounds against a confounder hidden from the frames, as strong as the brightness and twice that
    nice -n 5 .venv/bin/python scripts/bench_dml_coverage.py sensitivity --replicates 60 --strengths 1 2
    # GATE coverage for the terciles of the object's size under heterogeneous effects
    nice -n 5 .venv/bin/python scripts/bench_dml_coverage.py gate --replicates 60

Writes OUT/{replicates.jsonl, results.md} (OUT defaults to outputs/dml_coverage_<study>) and prints the table.
Replicates are appended as they finish; rerunning the same command continues an interrupted study. Extra
arguments are Hydra overrides of every run (e.g. `dml.representation=features` for the JEPA).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from causal_engine.dml.benchmark import worker_init
from causal_engine.dml.coverage import STUDIES, fill_scenarios, load_records, run_study, summarise

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--replicates", type=int, default=60)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument(
        "--strengths", type=float, nargs="+", default=[1.0, 2.0], help="hidden confounder (sensitivity)"
    )
    parser.add_argument("--workers", type=int, default=1, help="replicates run at once, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--out", type=Path, help="default: outputs/dml_coverage_<study>")
    parser.add_argument("--summary", action="store_true", help="summarise OUT's replicates; fit nothing")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. dml.k_folds=3")
    args = parser.parse_intermixed_args()  # the study, options and overrides in any order
    out = args.out or REPO / "outputs" / f"dml_coverage_{args.study}"
    worker_init(args.threads)
    if args.summary:
        records = load_records(out)
    else:
        seeds = range(args.first_seed, args.first_seed + args.replicates)
        strengths = args.strengths if args.study == "sensitivity" else [None]
        records = run_study(
            args.study, seeds, strengths, args.overrides, out, workers=args.workers, threads=args.threads
        )
    fill_scenarios(records, out)
    table = summarise(sorted(records, key=lambda r: (r["strength"] or 0.0, r["seed"])))
    if not args.summary:
        command = ".venv/bin/python scripts/bench_dml_coverage.py " + " ".join(sys.argv[1:])
        (out / "results.md").write_text(f"# bench_dml_coverage {args.study}\n\n`{command}`\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
