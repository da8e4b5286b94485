"""Train the shipped causal PFN checkpoint (checkpoints/pfn.pt): a resumable, kill-safe background job.

    python scripts/train_pfn_checkpoint.py --steps 200000      # train, or resume, in ~/.cache/causal-engine/train_pfn
    python scripts/train_pfn_checkpoint.py --export-only       # write checkpoints/pfn.pt + pfn.json from it
    python scripts/train_pfn_checkpoint.py --steps 3000 --state-dir ~/.cache/causal-engine/train_pfn_ft \
        +model.init_checkpoint=PATH/pfn.pt                     # fine-tune a trained export (its json is kept)
    python scripts/train_pfn_checkpoint.py --steps 300 --state-dir /tmp/pfn_smoke --val-every 100   # a smoke run

All state (Lightning checkpoints, CSV logs, the test metrics) lives in `--state-dir`, outside the repository.
`last.ckpt` is written at every validation (`conf/callbacks/last_checkpoint.yaml`), so the job can be killed at
any moment and the same command resumes it from there (optimizer, schedule, step and the data stream included:
batch k is a pure function of the seed and k). It is `causal-engine experiment=pfn` with the broad prior, a
node curriculum up to `--max-nodes`, copula features, a cosine learning-rate decay over `--steps`, validation
every `--val-every` steps on the fixed in-prior set (`data.val_set`, broad prior), and the best validation AUROC kept.

`--export-only` writes the best checkpoint's weights without Lightning or Hydra objects:
`{"net_spec": {target, kwargs}, "state_dict": ..., "meta": {...}}` (what
`causal_engine.discovery.checkpoint.load_pfn` reads) and an honest
`pfn.json`: the prior, the sizes, steps, wall time, threads and the validation curve.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from causal_engine.discovery.checkpoint import best_checkpoint, export_pfn, sidecar
from causal_engine.run import run
from causal_engine.train import compose

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = Path("~/.cache/causal-engine/train_pfn").expanduser()
MAX_BYTES = 20e6  # the shipped checkpoint's size limit


def overrides_for(args: argparse.Namespace) -> list[str]:
    """The Hydra overrides of the recipe (recorded in pfn.json)."""
    return [
        "experiment=pfn",
        f"model={args.model}",
        "model.net.d_model=96",
        "model.net.n_layers=4",
        "model.net.feature_space=copula",
        "model.optimizer.lr=5e-4",
        "model.scheduler={_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true, "
        f"T_max: {args.steps}, eta_min: 2.0e-5}}",
        "model.loss.acyclic_warmup_steps=1000",
        "model.loss.acyclic_ramp_steps=2000",
        f"data.node_range=[10,{args.max_nodes}]",
        "data.curriculum_start=[5,15]",
        f"data.curriculum_batches={max(1, args.steps // 3)}",
        "data.val_set.num_nodes=30",
        "data.val_graphs=64",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.val_every}",
        "trainer.min_epochs=0",
        "monitor=val/auroc",
        "monitor_mode=max",
        "logger=csv",
        "tags=pfn_checkpoint",
        *args.overrides,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default="pfn_a",
        help="model preset (pfn_mlp_delta ... pfn_hyper_delta, or the letters pfn_a ... pfn_e; the default keeps the "
        "recorded recipes resumable)",
    )
    parser.add_argument("--steps", type=int, default=200_000, help="training steps (the cosine schedule's length)")
    parser.add_argument("--max-nodes", type=int, default=100, help="largest graph of the node curriculum")
    parser.add_argument("--val-every", type=int, default=500, help="validate (and write last.ckpt) every N steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="checkpoints and logs (outside git)")
    parser.add_argument("--out", type=Path, default=REPO / "checkpoints" / "pfn.pt")
    parser.add_argument("--export-only", action="store_true", help="export the state dir's best weights, no training")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.net.d_model=128")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = args.state_dir.expanduser() / "run"
    recipe = args.state_dir.expanduser() / "recipe.json"
    if args.export_only:
        export(run_dir, args.out, json.loads(recipe.read_text()))
        return
    last = run_dir / "checkpoints" / "last.ckpt"
    overrides = overrides_for(args)
    if recipe.exists() and json.loads(recipe.read_text())["overrides"] != overrides:
        raise SystemExit(f"{recipe} holds a different recipe; resume with the same flags or use a new --state-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    # each session logs to its own CSV directory (a resumed CSVLogger would overwrite the previous metrics.csv)
    session = f"session_{len(list((run_dir / 'csv').glob('session_*'))):03d}"
    resume = [f"ckpt_path={last}"] if last.exists() else []
    cfg = compose([*overrides, f"logger.csv.version={session}", *resume], run_dir)
    prior = OmegaConf.to_container(cfg.data.prior, resolve=True)
    if recipe.exists() and json.loads(recipe.read_text()).get("prior", prior) != prior:
        raise SystemExit(
            f"{recipe} records another prior than conf/data/scm_prior.yaml now gives; resume it from a checkout "
            "whose default is the recorded prior (recipe.json's 'prior'), or train in a new --state-dir"
        )
    (run_dir / "csv" / session).mkdir(parents=True, exist_ok=True)
    (run_dir / "csv" / session / "started").write_text(f"{time.time()}\n")
    recipe.write_text(json.dumps({"overrides": overrides, "threads": args.threads, "prior": prior}, indent=2) + "\n")
    print(f"{'resuming from ' + str(last) if last.exists() else 'starting'}; state in {args.state_dir}", flush=True)
    metrics = run(cfg)
    test = {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")}
    (run_dir / "test_metrics.json").write_text(json.dumps(test, indent=2) + "\n")


def validation_curve(run_dir: Path) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """(val metrics per validation step over every session, one record per session): each session logs to its
    own CSV directory, from its `started` stamp to its metrics.csv's last write (a kill loses at most the unflushed
    tail). A session that resumed from an older checkpoint than the previous one reached repeats steps; its
    validations replace the earlier ones, and the session records show the repeat and its hours."""
    curve: dict[int, dict[str, float]] = {}
    sessions: list[dict[str, float]] = []
    for version in sorted((run_dir / "csv").glob("session_*")):
        rows, start = version / "metrics.csv", version / "started"
        if not rows.exists():
            continue
        hours = max(0.0, rows.stat().st_mtime - float(start.read_text())) / 3600 if start.exists() else 0.0
        steps: list[int] = []
        with rows.open() as f:
            for row in csv.DictReader(f):
                steps.append(int(row["step"]))
                vals = {k: float(v) for k, v in row.items() if k.startswith("val/") and v not in ("", None)}
                if vals:
                    curve.setdefault(int(row["step"]), {}).update(vals)
        if steps:
            sessions.append({"first_step": min(steps), "last_step": max(steps), "hours": round(hours, 2)})
    return [{"step": s, **{k: round(v, 4) for k, v in m.items()}} for s, m in sorted(curve.items())], sessions


def trained_data(overrides: list[str], run_dir: Path) -> tuple[list[int], int]:
    """[smallest, largest] graph size the recipe trains on (the curriculum's first sizes up to data.node_range's
    largest: what `task=discover` warns outside of) and its graphs per step."""
    data = compose(overrides, run_dir).data
    return [int(data.curriculum_start[0]), int(data.node_range[1])], int(data.batch_size)


def initialised_from(overrides: list[str]) -> dict:
    """How the checkpoint a recipe fine-tunes (`+model.init_checkpoint=PATH`) was trained: its json sidecar (steps,
    graphs, validation curve, its own start), or just its path when it has none; {} for a recipe from scratch."""
    path = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("model.init_checkpoint=")), None)
    if path is None:
        return {}
    info = sidecar(path)
    return json.loads(info.read_text()) if info.is_file() else {"checkpoint": path}


def export(run_dir: Path, out: Path, recipe: dict) -> None:
    """Export the best-validation weights (else the last) with `export_pfn`, and write pfn.json beside them."""
    curve, sessions = validation_curve(run_dir)
    hours = sum(session["hours"] for session in sessions)
    stored = export_pfn(best_checkpoint(run_dir), out, {"recipe": "scripts/train_pfn_checkpoint.py", **recipe})
    size = out.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{out} is {size / 1e6:.1f} MB, above the {MAX_BYTES / 1e6:.0f} MB limit; train a smaller net")
    step = stored["steps"]
    test_file = run_dir / "test_metrics.json"
    start = initialised_from(recipe["overrides"])
    nodes, per_step = trained_data(recipe["overrides"], run_dir)
    meta = {
        **stored,
        "graphs_seen": step * per_step + start.get("graphs_seen", 0),
        "trained_nodes": nodes,
        "wall_hours": round(hours, 2),  # every session's, steps repeated after a resume included
        "sessions": sessions,
        "validation_at_export": next((c for c in curve if c["step"] in (step - 1, step)), None),
        "validation_curve": curve,
        "test": json.loads(test_file.read_text()) if test_file.exists() else {},
        **({"initialised_from": start} if start else {}),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    auroc = [c["val/auroc"] for c in curve if "val/auroc" in c]
    print(f"wrote {out} ({size / 1e6:.1f} MB): {stored['source']}, step {step}, {hours:.2f} h")
    if auroc:
        print(
            f"val/auroc: first {auroc[0]:.3f}, best {max(auroc):.3f}, last {auroc[-1]:.3f} ({len(auroc)} validations)"
        )


if __name__ == "__main__":
    main()
