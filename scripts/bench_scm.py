"""Throughput of ``causal_engine.scm`` against the seed notebook's pandas ``SCMGenerator``, in the same run.

    python scripts/bench_scm.py                # d = 20 and 50, the seed's configuration (about 1 minute)
    python scripts/bench_scm.py --max-d 200    # plus a sweep d = 10 ... 200: graphs/s and peak memory

The seed's configuration, per graph: Erdős–Rényi with edge probability 0.3, 100 observational samples, half the
nodes intervened on (ceil(d / 2)), each at the three values 5, 8, 10 with 100 fresh samples per regime, i.e.
100 + 300 · ceil(d / 2) rows. Rows: the seed (``causal_engine.scm.reference``, one graph per call, a fixed number of
graphs so its side is time-boxed), ours at the same edge_prob = 0.3, and ours at the default prior
(2 expected parents per node). Ours draws ``--batch`` graphs per ``sample_batch`` call (which also includes one
counterfactual query row per graph). Measurement rounds alternate between the implementations so that the load of
a shared machine hits both alike; the table reports the best round (timeit's convention) and the rate over all
rounds. Torch runs on ``--threads`` intra-op threads (default 1, like numpy here).

The sweep runs each d in a fresh subprocess so that its peak resident memory (Linux ``VmHWM`` after a reset,
minus the RSS after imports) belongs to that d alone. Writes table.md and throughput.png into --out and prints
the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from causal_engine import plots
from causal_engine.scm.reference import OURS, SWEEP_DS, compare_with_reference, rows_per_graph, sweep_point


def run_sweep(max_d: int, batch: int, threads: int, min_seconds: float) -> list[dict[str, float]]:
    points = []
    for d in [d for d in SWEEP_DS if d < max_d] + [max_d]:
        command = [sys.executable, __file__, "--sweep-point", str(d), "--batch", str(batch)]
        command += ["--threads", str(threads), "--min-seconds", str(min_seconds)]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        points.append({"d": d, **json.loads(result.stdout.strip().splitlines()[-1])})
        print(f"sweep d={d}: {points[-1]}", flush=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ds", type=int, nargs="+", default=[20, 50], help="node counts to compare")
    parser.add_argument("--batch", type=int, default=32, help="graphs per sample_batch call (ours)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved measurement rounds per d")
    parser.add_argument(
        "--seed-graphs", type=int, default=None, help="seed graphs per round (default 80 // d, at least 1)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--max-d", type=int, default=None, help="also sweep d = 10 ... max-d (graphs/s, memory)")
    parser.add_argument("--sweep-batch", type=int, default=8, help="graphs per call in the sweep")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="minimum timed seconds per sweep point")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_scm"))
    parser.add_argument("--sweep-point", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweep_point is not None:
        print(json.dumps(sweep_point(args.sweep_point, args.sweep_batch, args.min_seconds)))
        return
    seed_graphs = [args.seed_graphs or max(1, 80 // d) for d in args.ds]  # time-box the seed: ~1 s per round

    load = os.getloadavg()[0]
    results = {}
    for d, n_seed in zip(args.ds, seed_graphs, strict=True):
        results[d] = compare_with_reference(d, batch=args.batch, repeats=args.repeats, seed_graphs=n_seed)
        print(f"d={d}: " + ", ".join(f"{k} {v[0]:,.1f} graphs/s" for k, v in results[d].items()), flush=True)

    lines = [
        "| implementation | d | graphs/s | samples/s | speed-up vs seed | graphs/s (all rounds) | speed-up (all) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d, rates in results.items():
        seed_best, seed_all = rates["seed (pandas)"]
        for name, (best, overall) in rates.items():
            lines.append(
                f"| {name} | {d} | {best:,.1f} | {best * rows_per_graph(d):,.0f} | {best / seed_best:,.0f}× "
                f"| {overall:,.1f} | {overall / seed_all:,.0f}× |"
            )
    header = (
        f"Seed configuration (edge prob 0.3 for the seed, 100 samples per regime, 3 values, half the nodes "
        f"intervened: 100 + 300·ceil(d/2) rows per graph); ours {args.batch} graphs per call; best of {args.repeats} "
        f"alternating rounds (and the rate over all rounds); torch {torch.__version__}, {args.threads} thread(s); "
        f"load average {load:.1f} on {os.cpu_count()} CPUs at start."
    )
    table = header + "\n\n" + "\n".join(lines) + "\n"
    series = {name: (list(results), [results[d][name][0] for d in results]) for name in ["seed (pandas)", *OURS]}

    if args.max_d is not None:
        points = run_sweep(args.max_d, args.sweep_batch, args.threads, args.min_seconds)
        sweep = [
            "| d | rows/graph | graphs/s | samples/s | peak memory (MB) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for p in points:
            rows = rows_per_graph(p["d"])
            sweep.append(
                f"| {p['d']} | {rows:,} | {p['graphs_per_s']:,.1f} | {p['graphs_per_s'] * rows:,.0f} | "
                f"{p['peak_mb']:,.0f} |"
            )
        table += (
            f"\nSweep: default prior (2 expected parents), seed sample configuration, {args.sweep_batch} graphs per "
            f"call (best call of at least 3 and {args.min_seconds:g} s), one subprocess per d (peak RSS above its "
            f"{points[0]['baseline_mb']:,.0f} MB after imports).\n\n" + "\n".join(sweep) + "\n"
        )
        series["sweep: ours, 2 expected parents"] = ([p["d"] for p in points], [p["graphs_per_s"] for p in points])

    args.out.mkdir(parents=True, exist_ok=True)
    figure = plots.throughput_figure(series, title="SCM simulator throughput (same run)")
    plots.save_figure(figure, args.out / "throughput.png")
    (args.out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
