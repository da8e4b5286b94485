"""Fit the causal PFN's edge-probability calibration on prior draws and store it beside the checkpoint.

    python scripts/calibrate_pfn.py                                  # checkpoints/pfn.pt -> pfn.json "calibration"
    python scripts/calibrate_pfn.py --checkpoint /tmp/pfn.pt --graphs 8 --sizes 5 8   # a quick one

Isotonic regression per graph size (causal_engine.discovery.calibration) is fitted on the edge probabilities of
--graphs fresh graphs per size in --sizes (the default spans the shipped checkpoint's 5-100 variables) from
`data=scm_prior`'s prior object (the broad prior; --override changes it, e.g. `data.prior={_target_:
causal_engine.scm.prior.SeedPrior, obs_only_share: 0.1}`), seed --seed, and its expected calibration error is
measured before and after on as many held-out prior graphs (seed --seed + 100), pooled and size by size. No
out-of-prior table is ever used.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from scipy.special import expit  # noqa: E402

from causal_engine.discovery.calibration import fit_isotonic, prior_edge_logits, write_calibration  # noqa: E402
from causal_engine.discovery.checkpoint import load_pfn  # noqa: E402
from causal_engine.metrics import expected_calibration_error  # noqa: E402
from causal_engine.train import compose  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "pfn.pt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 7, 10, 14, 20, 30, 50, 70, 100])
    parser.add_argument("--graphs", type=int, default=256, help="graphs per size, for the fit and for the check")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides of the data=scm_prior config")
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = compose(["data=scm_prior", *args.override], REPO / "outputs" / Path(__file__).stem)
    prior_config = OmegaConf.to_container(cfg.data.prior, resolve=True)
    prior = instantiate(cfg.data.prior, _convert_="all")
    net = load_pfn(args.checkpoint)

    def draws(seed: int):
        return prior_edge_logits(net, prior, args.sizes, args.graphs, seed)

    fit_logits, fit_labels, fit_sizes = draws(args.seed)
    calibration = fit_isotonic(expit(fit_logits), fit_labels, fit_sizes)
    check_logits, check_labels, check_sizes = draws(args.seed + 100)
    before = expit(check_logits)
    after = calibration.probabilities(before, check_sizes)

    def ece(probs: np.ndarray, size: int | None = None) -> float:
        mask = slice(None) if size is None else check_sizes == size
        return round(expected_calibration_error(probs[mask], check_labels[mask]), 4)

    info = {
        "command": " ".join(["python scripts/calibrate_pfn.py", *sys.argv[1:]]),
        "fitted_on": {"prior": prior_config, "sizes": args.sizes, "graphs_per_size": args.graphs, "seed": args.seed},
        "prior_ece_before": ece(before),
        "prior_ece_after": ece(after),
        "prior_ece_by_size": {str(d): [ece(before, d), ece(after, d)] for d in args.sizes},
    }
    write_calibration(args.checkpoint, calibration, info)
    print(
        f"isotonic maps at d = {calibration.sizes} ({[len(k) for k in calibration.knots]} knots); "
        f"held-out prior ECE {info['prior_ece_before']} -> {info['prior_ece_after']}; by size (before, after): "
        f"{info['prior_ece_by_size']}"
    )


if __name__ == "__main__":
    main()
