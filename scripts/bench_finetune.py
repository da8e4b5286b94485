"""Does causal fine-tuning reduce the interventional rows a plain network needs? (see the module docstring)

    python scripts/bench_finetune.py                  # nonlin_simpson and three zoo SCMs, 5 seeds
    python scripts/bench_finetune.py --scms nonlin_simpson --seeds 2 --budgets 10 100 --out outputs/bf_small

Results are appended to --out/results.jsonl per (SCM, seed); a rerun with the same --out resumes.
Writes --out/README.md (the tables) and prints them.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from causal_engine.intervene.finetune_benchmark import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scms", nargs="+", default=["nonlin_simpson", "symprod_simpson", "mediator_nonlin",
                                                       "large_backdoor_nonlin"])  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", nargs="+", type=int, default=[10, 30, 100, 300])
    parser.add_argument("--n-obs", type=int, default=1000, help="observational rows (pretraining)")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_finetune"))
    parser.add_argument("--stop-after", type=float, default=math.inf, help="minutes; rerun to resume")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    print(main(args.scms, args.seeds, args.budgets, args.n_obs, args.n_test, args.out, args.stop_after))
