"""Fit the causal PFN's edge-probability calibration on prior draws and store it beside the checkpoint.

    python scripts/calibrate_pfn.py                                  # checkpoints/pfn.pt -> pfn.json "calibration"
    python scripts/calibrate_pfn.py --checkpoint /tmp/pfn.pt --graphs 8 --sizes 5 8   # a quick one

Isotonic regression per graph size (causal_engine.discovery.calibration), for observational-only tables and for
tables with interventional regimes apart, is fitted on the edge probabilities of --graphs fresh graphs per size in
--sizes and kind (the default spans the shipped checkpoint's 5-100 variables) from `data=scm_prior`'s prior
object (the broad prior, with its observational-only share set to 1 and to 0 for the two kinds; --override
changes it, e.g. `'~data.prior' '+data.prior={_target_: causal_engine.scm.prior.SeedPrior}'`), seed --seed, and
its expected calibration error is measured before and after on as many held-out prior graphs (seed --seed + 100),
pooled, by kind and by size, and drawn as a reliability diagram per kind (--out/reliability_prior.png). No out-of-prior
table is ever used.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from scipy.special import expit  # noqa: E402

from causal_engine import plots  # noqa: E402
from causal_engine.discovery.calibration import (  # noqa: E402
    KINDS,
    TableCalibration,
    fit_isotonic,
    prior_edge_logits,
    write_calibration,
)
from causal_engine.discovery.checkpoint import load_pfn  # noqa: E402
from causal_engine.metrics import expected_calibration_error, reliability  # noqa: E402
from causal_engine.train import compose  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "pfn.pt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 7, 10, 14, 20, 30, 50, 70, 100])
    parser.add_argument("--graphs", type=int, default=256, help="graphs per size, for the fit and for the check")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides of the data=scm_prior config")
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "calibrate_pfn", help="the reliability diagram")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = compose(["data=scm_prior", *args.override], args.out)
    prior_config = OmegaConf.to_container(cfg.data.prior, resolve=True)
    prior = instantiate(cfg.data.prior, _convert_="all")
    net = load_pfn(args.checkpoint)
    maps, before, after, labels, sizes, kinds = {}, [], [], [], [], []
    for kind in KINDS:
        kind_prior = dataclasses.replace(prior, obs_only_share=float(kind == "observational"))
        fit_logits, fit_labels, fit_sizes = prior_edge_logits(net, kind_prior, args.sizes, args.graphs, args.seed)
        maps[kind] = fit_isotonic(expit(fit_logits), fit_labels, fit_sizes)
        check_logits, check_labels, check_sizes = prior_edge_logits(
            net, kind_prior, args.sizes, args.graphs, args.seed + 100
        )
        before.append(expit(check_logits))
        after.append(maps[kind].probabilities(before[-1], check_sizes))
        labels.append(check_labels)
        sizes.append(check_sizes)
        kinds.append(np.full(check_labels.shape, kind))
    calibration = TableCalibration(**maps)
    before, after, labels, sizes, kinds = map(np.concatenate, (before, after, labels, sizes, kinds))

    def ece(probs: np.ndarray, mask: np.ndarray | None = None) -> float:
        mask = np.ones(len(labels), dtype=bool) if mask is None else mask
        return round(expected_calibration_error(probs[mask], labels[mask]), 4)

    info = {
        "command": " ".join(["python scripts/calibrate_pfn.py", *sys.argv[1:]]),
        "fitted_on": {
            "prior": prior_config,
            "sizes": args.sizes,
            "graphs_per_size_and_kind": args.graphs,
            "seed": args.seed,
        },
        "prior_ece_before": ece(before),
        "prior_ece_after": ece(after),
        "prior_ece_by_kind_and_size": {
            kind: {
                str(d): [ece(before, (kinds == kind) & (sizes == d)), ece(after, (kinds == kind) & (sizes == d))]
                for d in args.sizes
            }
            for kind in KINDS
        },
    }
    write_calibration(args.checkpoint, calibration, info)
    curves = {
        f"{kind}, {stage}": reliability(probs[kinds == kind], labels[kinds == kind])
        for kind in KINDS
        for stage, probs in (("raw", before), ("calibrated", after))
    }
    figure = plots.reliability_figure(curves, "held-out prior edge probabilities")
    path = plots.save_figure(figure, args.out / "reliability_prior.png")
    print(
        f"isotonic maps at d = {args.sizes} for {KINDS} tables; held-out prior ECE (both kinds pooled) "
        f"{info['prior_ece_before']} -> {info['prior_ece_after']}; by kind and size (before, after): "
        f"{info['prior_ece_by_kind_and_size']}; reliability diagram {path}"
    )


if __name__ == "__main__":
    main()
