"""Train the boosted pairwise edge classifier (causal_engine.discovery.pairwise) on the project's SCM prior.

    nice -n 10 python scripts/train_pairwise.py                       # 12 CPU-minutes of prior draws, then the fit
    python scripts/train_pairwise.py --cpu-minutes 0.2 --rounds 20 --out /tmp/pairwise.txt   # a smoke run
    python scripts/train_pairwise.py --cpu-minutes 20 --copula --out checkpoints/pairwise_copula.txt

The prior is `data=scm_prior`'s `prior` object (the broad prior; --override changes it, e.g.
`data.prior.obs_only_share=0.5`); graph sizes are uniform in --nodes, everything else is the prior's own.
Writes the LightGBM text model to --out and a json beside it saying how it was trained. One thread throughout.
--copula trains on every table's copula scores (`pairwise.copula_table`): a model whose edges are the same
for any strictly increasing transform of a column.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from causal_engine.discovery.pairwise import fit_booster, prior_pairs, write_sidecar  # noqa: E402
from causal_engine.train import compose  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-minutes", type=float, default=12.0, help="CPU minutes of prior draws")
    parser.add_argument("--nodes", type=int, nargs=2, default=[10, 30])
    parser.add_argument("--pair-fraction", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--copula", action="store_true", help="features of every table's copula scores")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides of the data=scm_prior config")
    parser.add_argument("--out", type=Path, default=REPO / "checkpoints" / "pairwise.txt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = compose(["data=scm_prior", *args.override], REPO / "outputs" / Path(__file__).stem)
    prior_config = OmegaConf.to_container(cfg.data.prior, resolve=True)
    prior = instantiate(cfg.data.prior, _convert_="all")

    start, cpu_start = time.monotonic(), time.process_time()
    x, y, graphs = prior_pairs(
        prior,
        node_range=tuple(args.nodes),
        pair_fraction=args.pair_fraction,
        cpu_seconds=60 * args.cpu_minutes,
        seed=args.seed,
        copula=args.copula,
    )
    draw_minutes, draw_cpu = (time.monotonic() - start) / 60, (time.process_time() - cpu_start) / 60
    print(f"{graphs} graphs, {len(y)} pairs ({y.mean():.3f} edges) in {draw_cpu:.1f} CPU-min", flush=True)
    booster, valid = fit_booster(x, y, rounds=args.rounds, seed=args.seed)
    fit_minutes = (time.monotonic() - start) / 60 - draw_minutes
    fit_cpu = (time.process_time() - cpu_start) / 60 - draw_cpu
    args.out.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(args.out), num_iteration=booster.best_iteration)
    info = {
        "command": " ".join(["python scripts/train_pairwise.py", *sys.argv[1:]]),
        "input": "copula" if args.copula else "raw",
        "prior": prior_config,
        "nodes": args.nodes,
        "pair_fraction": args.pair_fraction,
        "graphs": graphs,
        "pairs": len(y),
        "edge_rate": float(y.mean()),
        "draw_minutes": round(draw_minutes, 2),
        "draw_cpu_minutes": round(draw_cpu, 2),
        "fit_minutes": round(fit_minutes, 2),
        "fit_cpu_minutes": round(fit_cpu, 2),
        "threads": 1,
        **valid,
    }
    write_sidecar(args.out.with_suffix(".json"), info)
    print(info)


if __name__ == "__main__":
    main()
