"""task=query at its defaults vs a generous budget, with interval coverage (see causal_engine.intervene.benchmark).

OMP_NUM_THREADS=1 nice -n 10 python scripts/bench_query.py --n 500 --seeds 0 1 2 --out outputs/bench_query
    (one table per seed; the README averages each case over them; finished (case, seed) pairs are not re-run)
OMP_NUM_THREADS=1 nice -n 10 python scripts/bench_query.py --graphs --n 500 --out outputs/bench_query_graphs
    (--graphs: answer error with the true graph vs data.graph_path=discover, and the SHD of the graph used)
OMP_NUM_THREADS=1 nice -n 10 python scripts/bench_query.py --n 500 --cases chain3_nonlin --trace 10
    (--trace E: also score each point fit's answers every E epochs into runs/<case>/<arm>/trace.jsonl)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from causal_engine.intervene.benchmark import CASES, graph_comparison, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--n", type=int, default=1000, help="rows per table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one table per seed")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_query"))
    parser.add_argument("--graphs", action="store_true", help="true graph vs data.graph_path=discover")
    parser.add_argument("--trace", type=int, default=0, metavar="E", help="score the answers every E epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.graphs:
        print(graph_comparison(args.cases, args.n, args.seeds[0], args.out))
    else:
        print(main(args.cases, args.n, args.seeds, args.out, args.trace))
