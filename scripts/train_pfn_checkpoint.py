"""Train the shipped causal PFN checkpoint (checkpoints/pfn.pt) within a wall-clock budget on CPU.

    python scripts/train_pfn_checkpoint.py                      # model A, 50 minutes, 2 threads
    python scripts/train_pfn_checkpoint.py --model pfn_a --minutes 5 --out /tmp/pfn.pt   # a quick one

It is `causal-engine experiment=pfn` with a wider node curriculum (up to 50 nodes, so the d = 50 test set is
in distribution), a time limit instead of a step count, and a cosine learning-rate decay over the expected
number of steps; then the test sets run and the weights are exported without Lightning or Hydra objects:
`{"net_spec": {target, kwargs}, "state_dict": ..., "meta": {...}}`, which `task=discover` loads with
`causal_engine.discovery.checkpoint.load_pfn`. The run directory (TensorBoard, metrics.json) stays under
outputs/train_pfn_checkpoint/ and metrics are copied into checkpoints/pfn.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from causal_engine.discovery.checkpoint import best_checkpoint, export_pfn
from causal_engine.run import CONFIG_DIR, run

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pfn_a", help="model preset (pfn_a ... pfn_e)")
    parser.add_argument("--minutes", type=float, default=50.0, help="training wall-clock budget")
    parser.add_argument(
        "--steps-per-minute",
        type=float,
        default=120.0,
        help="expected speed, sets the cosine schedule length (measured: ~120/min on 2 cores)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "checkpoints" / "pfn.pt")
    parser.add_argument("--run-dir", type=Path, default=REPO / "outputs" / "train_pfn_checkpoint")
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="skip training; export the best checkpoint of an existing --run-dir (e.g. after a stop)",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.net.d_model=96")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    steps = int(args.minutes * args.steps_per_minute)
    overrides = [
        "experiment=pfn",
        f"model={args.model}",
        "model.net.d_model=96",
        "model.net.n_layers=4",
        "model.optimizer.lr=5e-4",
        "model.scheduler={_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true, "
        f"T_max: {steps}, eta_min: 2.0e-5}}",
        "model.loss.acyclic_warmup_steps=1000",
        "model.loss.acyclic_ramp_steps=2000",
        "data.node_range=[10,50]",
        "data.curriculum_start=[5,15]",
        f"data.curriculum_batches={steps // 3}",
        f"trainer.max_steps={steps}",
        f"+trainer.max_time=00:00:{int(args.minutes):02d}:{int(args.minutes % 1 * 60):02d}",
        # The stream is one endless epoch: with min_epochs >= 1 the time limit could never stop it.
        "trainer.min_epochs=0",
        "trainer.val_check_interval=500",
        "logger=csv",
        "tags=pfn_checkpoint",
        *args.overrides,
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(args.run_dir)
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(args.run_dir)
    HydraConfig().set_config(cfg)

    start = time.time()
    metrics = {} if args.export_only else run(cfg)
    export(
        args.run_dir,
        args.out,
        {
            "model": args.model,
            "train_minutes": None if args.export_only else round((time.time() - start) / 60, 1),
            "threads": args.threads,
            "overrides": overrides,
        },
        metrics,
    )


def export(run_dir: Path, out: Path, meta: dict, metrics: dict[str, float]) -> None:
    """Export the best-validation-SHD weights (else the last) and copy the test metrics beside them."""
    meta = export_pfn(best_checkpoint(run_dir), out, meta)
    test = {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")}
    out.with_suffix(".json").write_text(json.dumps({**meta, "test": test}, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {meta['source']}, step {meta['steps']}")
    for key, value in sorted(test.items()):
        print(f"{key:40s} {value:.4f}")


if __name__ == "__main__":
    main()
