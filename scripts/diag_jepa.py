"""Diagnose one cross-fitting fold of JEPA-DML on simulated videos: is the bias in the representation or the nuisances?

A full run fits K JEPAs; this fits one (fold `--fold` of the default plan, the same rows, inner split and
seed as `task=crossfit`) and reports, on that fold's held-out rows:

  probes      held-out R² of ridge regressions (penalty by leave-one-out CV) from the embeddings to each true
              confounder U, to the treatment logit f(U) and to the baseline outcome g(U);
  nuisances   held-out outcome MSE and propensity BCE of the configured networks (`dml.nuisance.*`, trained
              exactly as in the run) next to ridge / logistic regression on the same embeddings, and the
              references: ridge on the true U, the true g(U) (noise floor) and the true propensity;
  remainder   the conditional bias of the AIPW estimate given the fitted nuisances,
                  mean over held-out rows of (ê - e) · [(ĝ1 - g1) / ê + (ĝ0 - g0) / (1 - ê)],
              computable only in simulation (e, g known) and free of outcome noise, so one fold already
              estimates the bias of a full run (which averages it over folds; folds differ by a few
              hundredths), with its SE over rows.

Every extra argument is a Hydra override of `experiment=jepa_dml`, so each candidate change is one command:

    .venv/bin/python scripts/diag_jepa.py seed=1 model.tubelet=[2,2,2]
    .venv/bin/python scripts/diag_jepa.py --fold 2 seed=2 dml.nuisance.outcome.dropout=0.3

Prints a table and writes `diag.json` under `--out` (default /tmp/diag_jepa/<overrides>).

`--run DIR` instead reads a finished simulated run (`causal-engine experiment=jepa_dml hydra.run.dir=DIR`, its saved
out-of-fold predictions `DIR/rep0/fold*/oof.npz`) and splits its error, estimate - truth, into the remainder over
all rows (the bias the nuisances leave) and the rest (the sampling noise the CI accounts for); fits nothing:

    .venv/bin/python scripts/diag_jepa.py --run outputs/runs/<date>/<time>

`--bench OUT` does the same for every replicate of a `scripts/bench_dml.py --out OUT` benchmark and prints the
mean of each part (the sampling noise further split into what the true nuisances would see, which every
estimator on the same data shares, and the rest), then the remainder's share by bin of the true propensity:

    .venv/bin/python scripts/diag_jepa.py --bench outputs/bench_dml

`--nuisances OUT` refits only the outcome and propensity networks, on the embeddings of that benchmark's own
saved per-fold JEPAs, once as configured and once per `--variant`, over its first `--replicates` replicates;
it prints each variant's bias, coverage, mean SE, remainder and held-out losses, the estimate and remainder
paired by replicate against the configured networks (about 30 s per replicate and variant):

    .venv/bin/python scripts/diag_jepa.py --nuisances outputs/bench_dml --replicates 30 \
        --variant dml.val_fraction=0.2 --variant dml.nuisance.propensity.optimizer.lr=0.0005

`--pixel-bound` fits nothing either: it reads the confounders from hand-made per-frame pixel features (centroid,
mass, peak, spread), a bound on what the simulated frames show at the given simulator settings:

    .venv/bin/python scripts/diag_jepa.py --pixel-bound seed=1 data.pixel_noise=0.05 data.texture_contrast=0.05

`--supervised-bound` reads them with the JEPA's own encoder (`model.*`, fresh) and pooling trained end to end
*with* the true U, f and g as labels (1 600 videos, held-out R² on 400): what this architecture can extract from
these frames at this sample size, a bound for the self-supervised representation (minutes):

    .venv/bin/python scripts/diag_jepa.py --supervised-bound --threads 2 seed=1000

`--reliability R2 ...` asks what remainder a representation of a given quality would leave: it replaces the
video by the true U plus Gaussian noise such that each confounder's R² is the given value (one value, or six:
x0 y0 vx vy size brightness), fits the linear nuisances on 1 600 rows and averages the remainder on the other
400 over `--replicates` simulated data sets (no videos, no networks; seconds):

    .venv/bin/python scripts/diag_jepa.py --reliability 0.9 0.9 0.75 0.75 0.93 0.8
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from causal_engine.dml.benchmark import compare_nuisances, compare_readouts, decompose_bench
from causal_engine.dml.diagnostics import decompose_run, diagnose, pixel_bound, reliability_remainder, supervised_bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", type=int, default=0, help="which fold of the run's plan to fit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default /tmp/diag_jepa/<overrides>)")
    parser.add_argument(
        "--variant",
        action="append",
        help="nuisance variant fit on the same embeddings, comma-separated keys, e.g. "
        "dml.nuisance.outcome.dropout=0.3,dml.convergence.patience=40 (repeatable; '' = as configured)",
    )
    parser.add_argument("--run", type=Path, default=None, help="decompose a finished run's error instead (no fits)")
    parser.add_argument("--pixel-bound", action="store_true", help="R² of U from hand-made pixel features instead")
    parser.add_argument("--supervised-bound", action="store_true", help="R² of U from the encoder trained on U")
    parser.add_argument("--bench", type=Path, default=None, help="decompose a bench_dml.py --out folder instead")
    parser.add_argument("--readouts", type=Path, default=None, help="compare poolings of a bench's saved JEPAs")
    parser.add_argument("--nuisances", type=Path, default=None,
                        help="compare --variant nuisances on a bench's saved JEPAs")  # fmt: skip
    parser.add_argument("--readout-replicates", type=int, default=6, help="replicates for --readouts")
    parser.add_argument("--readout-pools", nargs="+", default=None, help="poolings for --readouts (default all)")
    parser.add_argument("--reliability", type=float, nargs="+", default=None, help="remainder at these probe R²s")
    parser.add_argument("--replicates", type=int, default=8, help="data sets for --reliability, --nuisances")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of experiment=jepa_dml, e.g. seed=1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    if args.reliability is not None:
        if len(args.reliability) not in (1, 6):
            parser.error("--reliability takes one R² or six (x0 y0 vx vy size brightness)")
        mean, se = reliability_remainder(args.reliability, args.replicates)
        print(f"reliability {args.reliability}: remainder {mean:+.3f} (SE {se:.3f}, {args.replicates} data sets)")
        return
    if args.pixel_bound:
        print(f"{args.overrides or '(defaults)'}: {pixel_bound(args.overrides)}")
        return
    if args.supervised_bound:
        print(f"{args.overrides or '(defaults)'}: {supervised_bound(args.overrides)}")
        return
    if args.bench is not None:
        print(decompose_bench(args.bench))
        return
    if args.readouts is not None:
        workdir = args.out or Path("/tmp/diag_jepa/readouts") / args.readouts.name
        print(compare_readouts(args.readouts, args.readout_replicates, args.readout_pools, workdir))
        return
    if args.nuisances is not None:
        workdir = args.out or Path("/tmp/diag_jepa/nuisances") / args.nuisances.name
        print(compare_nuisances(args.nuisances, args.replicates, ["", *(args.variant or [])], workdir))
        return
    if args.run is not None:
        r = decompose_run(args.run)
        print(f"{args.run}: estimate {r['estimate']:.3f} (SE {r['se']:.3f}), truth {r['truth']:g}: error "
              f"{r['estimate'] - r['truth']:+.3f} = remainder {r['remainder']:+.3f} (SE {r['remainder_se']:.3f}) "
              f"+ noise {r['noise']:+.3f}")  # fmt: skip
        return
    out = args.out or Path("/tmp/diag_jepa") / ("_".join(args.overrides).replace("/", "-") or "defaults")
    report = diagnose(args.overrides, args.fold, out, args.variant or [""])
    out.mkdir(parents=True, exist_ok=True)
    (out / "diag.json").write_text(json.dumps(report, indent=1))
    print(f"overrides {args.overrides or '(defaults)'}, fold {args.fold}: "
          f"JEPA fit {report['jepa_wall_s']:.0f} s wall / {report['jepa_cpu_s']:.0f} s CPU")  # fmt: skip
    header = f"{'':<34} {'outcome MSE':>11} {'prop. BCE':>9} {'remainder (SE)':>16}"
    print("probes: held-out ridge R²; linear nuisances: ridge per arm + logistic regression")
    for name, rep in report["representations"].items():
        probes = " ".join(f"{k} {v:.2f}" for k, v in rep["probe_r2"].items())
        print(f"{name:<18} dim {rep['dim']:>4}  {probes} | U mean {rep['probe_r2_u_mean']:.3f}")
    print(header)
    rows = {f"linear on {k}": v["linear"] for k, v in report["representations"].items()}
    rows |= {f"net {k}": v for k, v in report["networks"].items()}
    rows |= {"linear on true U": report["linear_on_true_u"], "true g, e": report["truth"]}
    for name, r in rows.items():
        print(f"{name:<34} {r['outcome_mse']:>11.3f} {r['propensity_bce']:>9.3f} "
              f"{r['remainder']:>+8.3f} ({r['remainder_se']:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
