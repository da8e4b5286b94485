"""Causal PFN vs classical discovery on the same test graphs: method x set x (SHD, AUROC, AUPRC, F1, the PFN's
ECE, delta RMSE, s/graph).

    python scripts/bench_discovery.py                               # er_d10, er_d20, er_d50; 8 graphs each
    python scripts/bench_discovery.py --sets er_d20 sf_d20 ood_values_d20 er_d100 --graphs 16

The graphs are the fixed test sets of `data=scm_prior` (seed 42): the first --graphs graphs of the sets that
`experiment=pfn` logs as test/<set>/<metric>. Edge metrics pool every off-diagonal pair of the set's graphs;
SHD is the mean per graph; a CPDAG's undirected edge counts as both directions. The PFN's probabilities are
calibrated as `task=discover` calibrates them (the checkpoint's json), and its graph read from them. Delta RMSE is in
observational z-units over non-intervened nodes (the PFN, and the zero / mean-shift delta baselines), also
split by whether the query's do-value lies within the do-values the checkpoint's prior drew (its json's
`prior.intervention_z`, in observational sd) or beyond them.
Slow methods are skipped above --max-d (default 20 for GES, GIES, NOTEARS). Writes README.md and
metrics.png into --out and prints the table and the PFN's speed-up over PC.

Timing (see causal_engine.discovery.compare): one thread for every method (torch, BLAS and OpenMP), one
untimed warm-up call per method and set. s_per_graph: a baseline one graph at a time from its samples to its
graph; the PFN one pass per batch of 8 graphs from the raw samples to edge probabilities (standardisation and
features included; mean of 5 passes) divided by 8. s_with_deltas: the PFN's full forward pass, which also
predicts the deltas of the batch's queries.

Out-of-prior mode (`--out-of-prior`): tables from generators written outside this project
(causal_engine.discovery.external: sempler, cdt and gcastle families, the sempler ones also with interventions),
never used for training, scored for the PFN at --checkpoint, the boosted pairwise baseline at --pairwise and
the classical baselines, each set raw and with every column standardised first, plus raw vs log vs rank copies
of every table for the PFN and the boosted baseline, and discretised copies (some columns cut into a few levels,
rows also sorted by one of them) for the PFN, the boosted model, |corr| and |partial corr|; edges are predicted at
the discover task's threshold.
Measured data with a published graph (--real, default: Sachs et al.'s flow cytometry as cdt ships it) is scored
the same way and reported in its own section, outside the simulated sets' means and goals. The classical
baselines' rows are cached under --out/cache (keyed by a digest of the tables), so a stopped run resumes and
another --checkpoint or --pairwise is compared without rerunning them.

    python scripts/bench_discovery.py --out-of-prior                # d = 20, 300 rows, 12 tables per set
    python scripts/bench_discovery.py --out-of-prior --tables 2 --d 6 --rows 80 --methods abs-corr   # quick
"""

from __future__ import annotations

import os

# One thread for every method (numpy/scipy baselines and torch alike): a fair comparison, and BLAS on a shared
# CPU is ~50x slower when oversubscribed. Set before numpy and torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from causal_engine import plots  # noqa: E402
from causal_engine.discovery.baselines import EDGE_METHODS, mean_shift_delta, zero_delta  # noqa: E402
from causal_engine.discovery.calibration import read_calibration, sidecar  # noqa: E402
from causal_engine.discovery.checkpoint import trained_do_range  # noqa: E402
from causal_engine.discovery.compare import (  # noqa: E402
    BOOSTED_COPULA,
    PROBABILISTIC,
    delta_rmse,
    discrete_row,
    goals,
    monotone_row,
    out_of_prior,
    out_of_prior_report,
    pfn_method,
    pooled_reliability,
    real_data_report,
    run_method,
    run_pfn,
    table_aurocs,
)
from causal_engine.discovery.discover import do_distance  # noqa: E402
from causal_engine.discovery.external import FAMILIES, INTERVENTIONAL, REAL, external_table, real_table  # noqa: E402
from causal_engine.discovery.pairwise import PairwiseModel  # noqa: E402
from causal_engine.errors import UserError  # noqa: E402
from causal_engine.metrics import binned_calibration_error  # noqa: E402
from causal_engine.train import compose  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("shd", "sid", "auroc", "auprc", "f1", "ece", "delta_rmse", "s_per_graph", "s_with_deltas")


def fmt(value: float, key: str) -> str:
    if np.isnan(value):
        return "—"
    if key.startswith("s_"):
        return f"{value:.5f}"
    return f"{value:.3f}" if key != "shd" else f"{value:.1f}"


def run_out_of_prior(args: argparse.Namespace) -> None:
    """The out-of-prior benchmark (module docstring): README.md, rows.csv and per_table.csv into --out."""
    threshold = float(compose(["task=discover"], args.out).task.threshold)
    calibration = read_calibration(args.checkpoint)
    methods = {"causal PFN": pfn_method(args.checkpoint, threshold, calibration)}
    if calibration is not None:
        methods["causal PFN (uncalibrated)"] = pfn_method(args.checkpoint, threshold)
    if args.pairwise.is_file():
        methods["boosted"] = PairwiseModel.load(args.pairwise, threshold)
    if args.pairwise_copula.is_file():
        methods[BOOSTED_COPULA] = PairwiseModel.load(args.pairwise_copula, threshold)
    methods.update({name: EDGE_METHODS[name] for name in args.methods})
    sets = {}
    for family in args.families:
        seeds = range(args.seed, args.seed + args.tables)
        sets[family] = [external_table(family, args.d, args.rows, seed) for seed in seeds]
        if family in INTERVENTIONAL and args.interventions:
            sets[f"{family}+int"] = [
                external_table(family, args.d, args.rows, seed, interventions=args.interventions) for seed in seeds
            ]
    real = {name: [real_table(name)] for name in args.real}
    every = out_of_prior(methods, {**sets, **real}, cache=args.out / "cache")
    rows = [r for r in every if r["set"] not in real]
    learned = ("causal PFN", "boosted", BOOSTED_COPULA)
    invariant = {name: methods[name] for name in (*learned, "abs-corr") if name in methods}
    tables = [g for family in args.families for g in sets[family]]
    monotone = {name: monotone_row(method, tables) for name, method in invariant.items()}
    cheap = {name: methods[name] for name in (*learned, "abs-corr", "partial-corr") if name in methods}
    discrete = {
        name: discrete_row(method, tables, args.seed, table_aurocs(rows, name, args.families))
        for name, method in cheap.items()
    }
    report = out_of_prior_report(rows, monotone, goals(rows), discrete)
    if real:
        real_tables = [g for group in real.values() for g in group]
        real_monotone = {name: monotone_row(method, real_tables) for name, method in invariant.items()}
        report += "\n\n" + real_data_report([r for r in every if r["set"] in real], real_monotone)
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {name: pooled_reliability(rows, name) for name in methods if name in PROBABILISTIC}
    calibration_lines = [
        f"- {name}: out-of-prior ECE {binned_calibration_error(*curve):.3f} (every raw table pooled)"
        for name, curve in curves.items()
    ]
    if calibration is not None:
        stored = json.loads(sidecar(args.checkpoint).read_text())["calibration"]
        calibration_lines.append(
            "- calibration (fitted on prior draws only): isotonic maps for observational-only and interventional "
            f"tables at d = {', '.join(map(str, calibration.observational.sizes))}; held-out prior ECE "
            f"{stored['prior_ece_before']} -> {stored['prior_ece_after']}"
        )
    plots.save_figure(plots.reliability_figure(curves, "out-of-prior edge probabilities"), args.out / "reliability.png")
    command = " ".join(["python scripts/bench_discovery.py", *sys.argv[1:]])
    header = f"# bench_discovery --out-of-prior\n\n`{command}`\n\ncheckpoint {args.checkpoint}, threshold {threshold}"
    calibration_text = "\n".join(["Calibration (reliability.png):", "", *calibration_lines])
    (args.out / "README.md").write_text(f"{header}\n\n{report}\n\n{calibration_text}\n")
    print(calibration_text)
    drop = ("per_table", "reliability")
    flat = pd.DataFrame([{k: v for k, v in r.items() if k not in drop} for r in every])
    flat.to_csv(args.out / "rows.csv", index=False)
    per_table = [
        {"method": r["method"], "set": r["set"], "scaling": r["scaling"], "table": k, "auroc": v}
        for r in every
        for k, v in enumerate(r["per_table"])
    ]
    pd.DataFrame(per_table).to_csv(args.out / "per_table.csv", index=False)
    print(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["er_d10", "er_d20", "er_d50"])
    parser.add_argument("--graphs", type=int, default=8, help="graphs per set (the first N of the fixed set)")
    parser.add_argument("--methods", nargs="+", default=list(EDGE_METHODS))
    parser.add_argument(
        "--max-d",
        nargs="*",
        default=["GES=20", "GIES=20", "NOTEARS=20"],
        help="METHOD=D: skip METHOD on graphs with more than D nodes",
    )
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "pfn.pt")
    parser.add_argument("--out", type=Path, default=None, help="default outputs/bench_discovery[_out_of_prior]")
    oop = parser.add_argument_group("out of prior")
    oop.add_argument("--out-of-prior", action="store_true", help="tables from external generators (docstring)")
    oop.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    oop.add_argument("--tables", type=int, default=12, help="tables per set")
    oop.add_argument("--d", type=int, default=20, help="nodes per table")
    oop.add_argument("--rows", type=int, default=300, help="observational rows per table")
    oop.add_argument("--interventions", type=int, default=4, help="single-node regimes of the +int sets (0: none)")
    oop.add_argument("--seed", type=int, default=0, help="table k of every set uses seed + k")
    oop.add_argument(
        "--real",
        nargs="*",
        default=list(REAL),
        choices=REAL,
        help="measured data sets (external.REAL), reported apart from the simulated sets' means and goals; "
        "--real alone: none",
    )
    oop.add_argument("--pairwise", type=Path, default=REPO / "checkpoints" / "pairwise.txt")
    oop.add_argument(
        "--pairwise-copula",
        type=Path,
        default=REPO / "checkpoints" / "pairwise_copula.txt",
        help="the boosted model on copula scores (train_pairwise.py --copula); scored when the file exists",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.out_of_prior:
        args.out = args.out or REPO / "outputs" / "bench_discovery_out_of_prior"
        run_out_of_prior(args)
        return
    args.out = args.out or REPO / "outputs" / "bench_discovery"
    max_d = {k: int(v) for k, v in (item.split("=") for item in args.max_d)}

    cfg = compose(["data=scm_prior", f"data.test_graphs={args.graphs}"], args.out)
    datamodule = instantiate(cfg.data, _convert_="all")
    try:
        datamodule.select_test_sets(args.sets, "--sets")
    except UserError as error:
        parser.error(str(error))  # a clear message and exit status 2, no traceback
    datamodule.setup("test")

    rows: list[tuple[str, str, dict[str, float]]] = []
    split: list[str] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # the PFN's reliability bins per set
    for name in args.sets:
        batches = datamodule.test_batches[name]
        d = batches[0].num_nodes
        if args.checkpoint.is_file():
            pfn = run_pfn(args.checkpoint, batches)
            curves[name] = pfn.pop("reliability")
            rows.append(("causal PFN", name, {**pfn, "s_with_deltas": pfn["s_per_graph_with_deltas"]}))
        for method in args.methods:
            if d > max_d.get(method, 10**9):
                continue
            row = {**run_method(method, batches), "ece": float("nan"), "s_with_deltas": float("nan")}
            rows.append((method, name, row))
            print(f"{name:16s} {method:10s} done", flush=True)
        nan = dict.fromkeys(set(COLUMNS) - {"delta_rmse"}, float("nan"))
        rows.append(("zero delta", name, {**nan, "delta_rmse": delta_rmse(batches, zero_delta)}))
        rows.append(("mean-shift delta", name, {**nan, "delta_rmse": delta_rmse(batches, mean_shift_delta)}))
        if args.checkpoint.is_file() and "delta_rmse_beyond" in pfn:
            limit = trained_do_range(args.checkpoint)
            within = delta_rmse(batches, mean_shift_delta, lambda b, z=limit: do_distance(b) <= z)
            beyond = delta_rmse(batches, mean_shift_delta, lambda b, z=limit: do_distance(b) > z)
            split.append(
                f"- {name}: delta RMSE with do-values within {limit:g} sd (the trained range) / beyond: causal PFN "
                f"{pfn['delta_rmse_in_range']:.3f} / {pfn['delta_rmse_beyond']:.3f}, mean-shift {within:.3f} / "
                f"{beyond:.3f}"
            )

    header = "| method | set | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    lines += [f"| {m} | {s} | " + " | ".join(fmt(r[k], k) for k in COLUMNS) + " |" for m, s, r in rows]
    seconds = {(m, s): r["s_per_graph"] for m, s, r in rows}
    speed = [
        f"- {name}: PC / PFN seconds per graph = {seconds[('PC', name)] / seconds[('causal PFN', name)]:.0f}x"
        for name in args.sets
        if ("PC", name) in seconds and ("causal PFN", name) in seconds
    ]
    table = "\n".join([*lines, "", *speed, "", *split])
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python scripts/bench_discovery.py", *sys.argv[1:]])
    (args.out / "README.md").write_text(f"# bench_discovery\n\n`{command}`\n\n{table}\n")
    fig, axes = plots.plt.subplots(1, 2, figsize=(11, 4))
    methods = list(dict.fromkeys(m for m, _, r in rows if not np.isnan(r["auroc"])))
    width = 0.8 / max(1, len(methods))
    for k, method in enumerate(methods):
        for ax, key in zip(axes, ("auroc", "shd"), strict=True):
            values = [next((r[key] for m, s, r in rows if m == method and s == name), np.nan) for name in args.sets]
            ax.bar(np.arange(len(args.sets)) + k * width, values, width, label=method)
    for ax, key in zip(axes, ("edge AUROC (higher is better)", "SHD (lower is better)"), strict=True):
        ax.set_xticks(np.arange(len(args.sets)) + 0.4 - width / 2, args.sets)
        ax.set_title(key)
    axes[0].legend(fontsize=7)
    plots.save_figure(fig, args.out / "metrics.png")
    if curves:
        plots.save_figure(
            plots.reliability_figure(curves, "PFN edge probabilities by set"), args.out / "reliability.png"
        )
    print(table)


if __name__ == "__main__":
    main()
