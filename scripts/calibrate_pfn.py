"""Fit the causal PFN's edge-probability calibration on prior draws and store it beside the checkpoint.

    python scripts/calibrate_pfn.py                                  # checkpoints/pfn.pt -> pfn.json "calibration"
    python scripts/calibrate_pfn.py --checkpoint /tmp/pfn.pt --graphs 8 --sizes 5 8   # a quick one

Platt scaling (causal_engine.discovery.calibration) is fitted on the edge logits of --graphs fresh graphs per
size in --sizes from `data=scm_prior`'s prior object (the broad prior; --override changes it, e.g.
`data.prior={_target_: causal_engine.scm.prior.SeedPrior, obs_only_share: 0.1}`), seed --seed, and its
expected calibration error is measured before and after on as many held-out prior graphs (seed --seed + 100).
No out-of-prior table is ever used.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from scipy.special import expit  # noqa: E402

from causal_engine.discovery.calibration import fit_platt, prior_edge_logits, write_calibration  # noqa: E402
from causal_engine.discovery.checkpoint import load_pfn  # noqa: E402
from causal_engine.metrics import expected_calibration_error  # noqa: E402
from causal_engine.train import compose  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "pfn.pt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--graphs", type=int, default=64, help="graphs per size, for the fit and for the check")
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

    fit_logits, fit_labels = draws(args.seed)
    calibration = fit_platt(fit_logits, fit_labels)
    check_logits, check_labels = draws(args.seed + 100)
    before = expected_calibration_error(expit(check_logits), check_labels)
    after = expected_calibration_error(calibration.probabilities(expit(check_logits)), check_labels)
    info = {
        "command": " ".join(["python scripts/calibrate_pfn.py", *sys.argv[1:]]),
        "fitted_on": {"prior": prior_config, "sizes": args.sizes, "graphs_per_size": args.graphs, "seed": args.seed},
        "prior_ece_before": round(before, 4),
        "prior_ece_after": round(after, 4),
    }
    write_calibration(args.checkpoint, calibration, info)
    print(
        f"slope {calibration.slope:.4f}, intercept {calibration.intercept:.4f}; held-out prior ECE "
        f"{before:.4f} -> {after:.4f}"
    )


if __name__ == "__main__":
    main()
