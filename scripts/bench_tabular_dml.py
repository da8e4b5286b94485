"""Tabular DML against DoubleML in one process: matched learners, the same folds, three designs
(`causal_engine.dml.tabular_benchmark`). Prints and writes OUT/results.md and OUT/results.json.

    nice -n 10 .venv/bin/python scripts/bench_tabular_dml.py [--designs irm_ate att_pool plr_cont] [dml/tabular=hist_gb]

Goal: the two estimates within 0.25 of DoubleML's SE of each other, ours at most 1.5x DoubleML's wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from causal_engine.dml.tabular_benchmark import DESIGNS, compare

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DESIGNS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_tabular_dml")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of our run, e.g. dml/tabular=hist_gb")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table, rows = compare(args.designs, args.overrides, args.out / "runs", seed=args.seed)
    command = ".venv/bin/python scripts/bench_tabular_dml.py " + " ".join(sys.argv[1:])
    (args.out / "results.md").write_text(f"# bench_tabular_dml\n\n`{command}`\n\n{table}\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table)


if __name__ == "__main__":
    main()
