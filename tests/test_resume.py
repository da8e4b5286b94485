"""`ckpt_path=<run>/checkpoints/last.ckpt` continues a run where it stopped (optimizer, step and loops included)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from causal_engine.run import run

SMALL = [
    "experiment=pfn",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.progress_bar=null",
    "data.val_graphs=4",
    "data.test_graphs=2",
    "~data.test_sets",
    "+data.test_sets={er_d10: {num_nodes: 10}}",
]


def test_fit_resumes_from_last_checkpoint(compose):
    cfg = compose([*SMALL, "trainer.max_steps=4"])
    run(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=False)
    steps = first["global_step"]
    assert steps > 0

    # Resumed with another seed and no steps left: a resumed run keeps the checkpoint's weights exactly,
    # a run that silently started over would have trained fresh weights.
    run(compose([*SMALL, "seed=7", f"trainer.max_steps={steps}", f"ckpt_path={last}"]))
    kept = torch.load(last, map_location="cpu", weights_only=False)
    assert kept["global_step"] == steps
    for name, tensor in first["state_dict"].items():
        assert torch.equal(tensor, kept["state_dict"][name]), name

    # Resumed with steps left: training continues from the checkpoint's step and optimizer state.
    metrics = run(compose([*SMALL, f"trainer.max_steps={steps + 2}", f"ckpt_path={last}"]))
    second = torch.load(last, map_location="cpu", weights_only=False)
    assert second["global_step"] == steps + 2
    adam_step = next(iter(second["optimizer_states"][0]["state"].values()))["step"]
    assert int(adam_step) == steps + 2
    assert "test/er_d10/shd" in metrics


def test_last_checkpoint_follows_every_validation_not_only_improvements(compose):
    # No best checkpoint is ever kept (save_top_k=0), as when the monitored metric stops improving: last.ckpt
    # must still hold the final step, or a killed run would resume from its last improvement.
    cfg = compose([*SMALL, "trainer.max_steps=4", "callbacks.model_checkpoint.save_top_k=0"])
    run(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    assert not list(last.parent.glob("best-*.ckpt"))


def test_resume_overwrites_a_last_checkpoint_it_did_not_write(compose):
    # A last.ckpt that the callback did not write (an older config's, or one copied in) is not its own file:
    # Lightning's version counter would save last-v1.ckpt beside it, and the next resume from last.ckpt would
    # lose every step since.
    cfg = compose([*SMALL, "trainer.max_steps=2", "callbacks.last_checkpoint=null"])
    run(cfg)
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    last = folder / "last.ckpt"
    shutil.copy(next(folder.glob("best-*.ckpt")), last)
    run(compose([*SMALL, "trainer.max_steps=4", f"ckpt_path={last}"]))
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    assert sorted(p.name for p in folder.glob("last*.ckpt")) == ["last.ckpt"]
