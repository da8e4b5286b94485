"""Tabular DML against DoubleML in one process: matched learners, the same folds, three designs
(`causal_engine.dml.tabular_benchmark`). Prints and writes OUT/results.md and OUT/results.json.

    nice -n 10 .venv/bin/python scripts/bench_tabular_dml.py [--designs irm_ate att_pool plr_cont] [dml/tabular=hist_gb]

Goal: the two estimates within 0.25 of DoubleML's SE of each other, ours at most 1.5x DoubleML's wall time.

`--learners A B ...` runs the learner study instead (`learner_study`): each preset on --seeds draws of n = --n rows
of the DoubleML designs (irm_ate, plr_cont by default), bias and coverage per design and learner, resumable:

    nice -n 10 .venv/bin/python scripts/bench_tabular_dml.py --learners forest stack --seeds 53 --n 1000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from causal_engine.dml.tabular_benchmark import DESIGNS, compare, learner_study

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", nargs="+", choices=DESIGNS, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--learners", nargs="+", help="the learner study: these dml/tabular presets")
    parser.add_argument("--seeds", type=int, default=30, help="learner study: seeds 0..N-1 (designs 1000 + seed)")
    parser.add_argument("--n", type=int, default=1000, help="learner study: rows per draw")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of our run, e.g. dml/tabular=hist_gb")
    args = parser.parse_args()
    command = ".venv/bin/python scripts/bench_tabular_dml.py " + " ".join(sys.argv[1:])
    if args.learners:
        if args.overrides:
            parser.error("the learner study takes no overrides: it varies dml/tabular only")
        out = args.out or REPO / "outputs" / "bench_tabular_dml_learners"
        designs = args.designs or ["irm_ate", "plr_cont"]
        table, _ = learner_study(designs, args.learners, range(args.seeds), args.n, out)
        (out / "results.md").write_text(f"# bench_tabular_dml learner study\n\n`{command}`\n\n{table}\n")
        print(table)
        return
    args.out = args.out or REPO / "outputs" / "bench_tabular_dml"
    args.out.mkdir(parents=True, exist_ok=True)
    table, rows = compare(args.designs or list(DESIGNS), args.overrides, args.out / "runs", seed=args.seed)
    (args.out / "results.md").write_text(f"# bench_tabular_dml\n\n`{command}`\n\n{table}\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table)


if __name__ == "__main__":
    main()
