"""Write simulated confounded videos for `data=video_files`, chunk by chunk (any N fits in memory).

    python scripts/simulate_videos.py --out data/sim --n 20000 --dims 3 16 64 64
    causal-engine experiment=jepa_dml data=video_files data.videos=data/sim/videos.npy \\
        data.table=data/sim/table.csv data.treatment=treatment data.outcome=outcome

`--layout folder` writes one .npy file per video under OUT/videos/ instead of one OUT/videos.npy.
"""

from __future__ import annotations

import argparse

from causal_engine.dml.simulate import write_simulated_videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (videos.npy or videos/, and table.csv)")
    parser.add_argument("--n", type=int, required=True, help="number of videos")
    parser.add_argument("--dims", type=int, nargs=4, default=(1, 8, 16, 16), metavar=("C", "T", "H", "W"))
    parser.add_argument("--layout", choices=("npy", "folder"), default="npy")
    parser.add_argument("--chunk-size", type=int, default=256, help="videos simulated and written at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ate", type=float, default=1.0)
    parser.add_argument("--treatment-strength", type=float, default=1.0)
    args = parser.parse_args()
    videos, table = write_simulated_videos(
        args.out,
        args.n,
        args.dims,
        layout=args.layout,
        chunk_size=args.chunk_size,
        seed=args.seed,
        ate=args.ate,
        treatment_strength=args.treatment_strength,
    )
    print(f"wrote {videos} and {table}")


if __name__ == "__main__":
    main()
