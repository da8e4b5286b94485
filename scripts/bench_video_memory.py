"""Peak memory and time per fold of JEPA-DML on videos that stay on disk (causal_engine.dml.video_cost).

    python scripts/simulate_videos.py --out /tmp/v20k --n 20000 --dims 3 16 64 64      # 15.7 GB .npy
    nice -n 10 python scripts/bench_video_memory.py --videos /tmp/v20k/videos.npy --table /tmp/v20k/table.csv

The tubelet defaults to 2×8×8 (512 tokens for 16×64×64 clips). Writes outputs/bench_video_memory/results.json
and results.md; exits with status 1 when the peak RSS exceeds --max-gb.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from causal_engine.dml.video_cost import measure_video_fold
from causal_engine.train import compose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True, help="[N, C, T, H, W] .npy or a folder of [C, T, H, W] .npy")
    parser.add_argument("--table", required=True, help="table with columns treatment, outcome (one row per video)")
    parser.add_argument("--tubelet", type=int, nargs=3, default=(2, 8, 8), metavar=("T", "H", "W"))
    parser.add_argument("--train-batches", type=int, default=8, help="JEPA batches run (the epoch is extrapolated)")
    parser.add_argument("--max-gb", type=float, default=3.0, help="peak RSS goal")
    parser.add_argument("--out", default="outputs/bench_video_memory")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. dml.jepa_batch_size=32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = [
        "experiment=jepa_dml",
        "data=video_files",
        f"data.videos={args.videos}",
        f"data.table={args.table}",
        "data.treatment=treatment",
        "data.outcome=outcome",
        f"model.tubelet=[{','.join(map(str, args.tubelet))}]",
        "callbacks=none",
        "logger=csv",
        *args.overrides,
    ]
    with tempfile.TemporaryDirectory() as run_dir:
        result = measure_video_fold(compose(overrides, run_dir), args.train_batches)
    result["overrides"] = overrides
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    rows = [
        ("videos", f"{result['n']} × {result['video_shape']}"),
        ("tokens per clip / D'", f"{result['tokens_per_clip']} / {result['features_dim']}"),
        ("peak RSS (MB)", f"{result['peak_rss_mb']:.0f} (at start {result['baseline_rss_mb']:.0f})"),
        *(
            (step, f"{c['cpu_s']:.1f} CPU s, {c['wall_s']:.1f} wall s, peak RSS {c['peak_rss_mb']:.0f} MB")
            for step, c in result["steps"].items()
        ),
        (
            f"JEPA epoch (from {result['jepa_batches_run']} of {result['jepa_batches_per_epoch']} batches)",
            f"{result['jepa_epoch_cpu_s']:.0f} CPU s, {result['jepa_epoch_wall_s']:.0f} wall s",
        ),
        (
            f"fold ({result['jepa_epochs']} JEPA epochs, extrapolated)",
            f"{result['fold_cpu_s']:.0f} CPU s, {result['fold_wall_s']:.0f} wall s",
        ),
    ]
    table = "| quantity | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    (out / "results.md").write_text(table)
    print(table)
    if result["peak_rss_mb"] > args.max_gb * 1024:
        sys.exit(f"peak RSS {result['peak_rss_mb']:.0f} MB exceeds --max-gb {args.max_gb}")


if __name__ == "__main__":
    main()
