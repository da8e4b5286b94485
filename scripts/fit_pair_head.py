"""Fit the causal PFN's per-pair head on prior draws and store it in the checkpoint (then recalibrate).

    python scripts/fit_pair_head.py && python scripts/calibrate_pfn.py    # checkpoints/pfn.pt gets its head
    python scripts/fit_pair_head.py --checkpoint /tmp/pfn.pt --graphs 16 --sizes 5 8    # a quick one

`causal_engine.discovery.pair_head.fit_pair_head` fits the head with the trunk frozen on --graphs fresh graphs per
size in --sizes, seed --seed, and the mix on as many others. The graphs come from `data=scm_prior`'s prior (the
broad prior the checkpoint was trained on; --override changes it) and, given --second-prior (overrides of the
same config, e.g. `'~data.prior' '+data.prior={_target_: causal_engine.scm.prior.SeedPrior}'`), half of them
from that one. The edge AUROC of the trunk alone and with the head is then measured on a quarter as many held-out
graphs of each prior (seed --seed + 2000), pooled per size, and stored with the fit's settings (the shipped
head's command among them) under "pair_head" in the checkpoint's json. No out-of-prior table is ever used. The
checkpoint's weights change, so its calibration must be refitted (`scripts/calibrate_pfn.py`; until then it is
ignored with a warning). The head is used on graphs of at least the smallest of --sizes variables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from torchmetrics.functional.classification import binary_auroc

from causal_engine.discovery.checkpoint import load_pfn, load_weights, save_pfn, sidecar
from causal_engine.discovery.pair_head import fit_pair_head, prior_pairs
from causal_engine.train import compose

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "pfn.pt", help="read and rewritten")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 15, 20, 30, 50])
    parser.add_argument("--graphs", type=int, default=4096, help="prior graphs per size for the fit (and the mix)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden width of the head's MLP")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=9000)
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides of the data=scm_prior config")
    parser.add_argument("--second-prior", nargs="*", default=None, help="overrides giving a second prior (docstring)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    groups = {"prior": args.override} | ({} if args.second_prior is None else {"second_prior": args.second_prior})
    priors = {
        name: instantiate(compose(["data=scm_prior", *overrides], REPO / "outputs").data.prior, _convert_="all")
        for name, overrides in groups.items()
    }
    net = load_pfn(args.checkpoint)
    start = time.time()
    head = fit_pair_head(
        net, list(priors.values()), args.hidden, args.sizes, args.graphs, epochs=args.epochs, seed=args.seed
    )
    seconds = time.time() - start
    net.pair_head = None  # the trunk alone (a refitted checkpoint comes with its earlier head)
    check: dict[str, dict[int, dict[str, float]]] = {}
    for name, prior in priors.items():
        for d in args.sizes:
            pairs, trunk, labels = prior_pairs(net, [prior], [d], max(args.graphs // 4, 8), args.seed + 2000 + d)
            with torch.no_grad():
                mixed = head.mixed(pairs, trunk)
            auroc = {
                "trunk": float(binary_auroc(trunk, labels.long())),
                "with_head": float(binary_auroc(mixed, labels.long())),
            }
            check.setdefault(name, {})[d] = auroc
            print(f"{name} d={d}: held-out AUROC trunk {auroc['trunk']:.4f}, with head {auroc['with_head']:.4f}")
    net.add_pair_head(head)
    info = {
        "command": " ".join(["python", "scripts/fit_pair_head.py", *sys.argv[1:]]),
        "hidden": args.hidden,
        "sizes": args.sizes,
        "graphs_per_size": args.graphs,
        "epochs": args.epochs,
        "seed": args.seed,
        "overrides": args.override,
        "second_prior": args.second_prior,
        "seconds": round(seconds),
        "mix": [round(float(w), 4) for w in head.mix],
        "min_nodes": int(head.min_nodes),
        "held_out_prior_auroc": check,
    }
    save_pfn(net, args.checkpoint, {**load_weights(args.checkpoint)["meta"], "pair_head": info})
    path = sidecar(args.checkpoint)
    meta = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**meta, "pair_head": info}, indent=2) + "\n")
    print(f"wrote {args.checkpoint} and {path}; now run python scripts/calibrate_pfn.py --checkpoint {args.checkpoint}")


if __name__ == "__main__":
    main()
