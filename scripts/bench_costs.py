"""Cost growth: time and peak memory against problem size, for the SCM prior, PFN inference next to PC and GES,
and the JEPA-DML cross-fit (`causal_engine.costs`, which says how points are measured). Writes
docs/benchmarks.md (tables, fitted growth exponents, one sentence per series) and its log-log plots in
docs/benchmarks/.

    python scripts/bench_costs.py                  # the full sweep (~7 min on 2 shared cores) -> docs/benchmarks.md
    python scripts/bench_costs.py --quick          # small sizes (< 1 min) -> outputs/bench_costs/benchmarks.md
    python scripts/bench_costs.py --render-only    # re-write the page and plots from the saved results.json
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process (set before numpy is imported): the machine is shared, and the numpy/scipy
# baselines are many times slower when oversubscribed. Torch's intra-op threads are --threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from causal_engine.costs import SIZES, measure_all, pfn_net, point_runner, preset_epochs, write_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def command_line() -> str:
    """This run's command as typed from the repo root: niceness, interpreter, script and arguments."""
    python = Path(sys.executable)
    python = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    nice = ["nice", "-n", str(os.nice(0))] if os.nice(0) else []
    return shlex.join([*nice, str(python), "scripts/bench_costs.py", *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 2 min)")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file (plots go to <out without .md>/)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per point")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "pfn.pt")
    parser.add_argument(
        "--render-only", action="store_true", help="re-write the page and plots from the last run's results.json"
    )
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    out = args.out or (REPO / "outputs" / "bench_costs" if args.quick else REPO / "docs") / "benchmarks.md"
    if args.render_only:
        saved = json.loads((out.with_suffix("") / "results.json").read_text())
        print(write_page(out, saved["results"], saved["meta"]))
        return
    sizes = SIZES[mode]
    checkpoint = args.checkpoint if args.checkpoint.is_file() else None
    started, load_start, t0 = datetime.now(UTC), os.getloadavg()[0], time.perf_counter()

    results = measure_all(sizes, point_runner(args.threads), None if checkpoint is None else str(checkpoint))

    net_args = pfn_net(None if checkpoint is None else str(checkpoint)).init_kwargs
    source = (
        f"the shipped checkpoint {checkpoint.relative_to(REPO) if checkpoint.is_relative_to(REPO) else checkpoint}"
        if checkpoint
        else "no checkpoint in checkpoints/, so a freshly initialised MLPDeltaPFN from conf/model/pfn_base.yaml's net "
        "arguments (inference cost does not depend on the weights)"
    )
    meta = {
        **sizes,
        "mode": mode,
        "command": command_line(),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": (time.perf_counter() - t0) / 60,
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "torch": torch.__version__,
        "threads": args.threads,
        "blas_threads": os.environ["OMP_NUM_THREADS"],
        "pfn": f"{source}: " + ", ".join(f"{k} {v}" for k, v in net_args.items()),
        "preset_dml": preset_epochs(),
    }
    print(write_page(out, results, meta))


if __name__ == "__main__":
    main()
