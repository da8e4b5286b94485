"""Data-parallel training on CPU: two gloo processes, as `trainer=ddp trainer.accelerator=cpu trainer.devices=2`.

Lightning's DDP launcher re-executes the command line, so this runs the real console entry point in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

JEPA = ["task=fit", "model=jepa", "data=video_confounded", "data.n_samples=256", "trainer.max_epochs=1"]


@pytest.mark.slow
def test_jepa_trains_with_ddp_on_two_cpu_processes(tmp_path: Path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "causal_engine", *JEPA, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.sync_batchnorm=false", "callbacks.progress_bar=null", "monitor=val/loss", f"hydra.run.dir={out}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "train_ddp_process_1.log").exists()
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert any(k.startswith("test/") for k in json.loads((out / "metrics.json").read_text()))


@pytest.mark.slow
def test_pfn_trains_with_ddp_on_two_cpu_processes(tmp_path: Path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "causal_engine", "experiment=pfn", "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "callbacks.progress_bar=null", f"hydra.run.dir={out}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test/er_d20/shd" in metrics
    # The second rank ran the same job in the same run directory.
    assert (out / "train_ddp_process_1.log").exists()
    assert (out / "checkpoints" / "last.ckpt").exists()
