"""A run killed mid-training (SIGKILL) and resumed with `ckpt_path=last` ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SMALL = [
    "experiment=pfn",
    "trainer.max_steps=30",
    "trainer.val_check_interval=5",
    "callbacks.progress_bar=null",
    "data.val_graphs=4",
    "data.test_graphs=4",
    "~data.test_sets",
    "+data.test_sets={er_d10: {num_nodes: 10}}",
]


def command(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "causal_engine", *SMALL, f"hydra.run.dir={run_dir}", *extra]


def first_checkpoint(path: Path, process: subprocess.Popen, timeout: float = 600) -> int:
    """Wait until `path` holds a complete checkpoint; return its global step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists():
            try:
                return torch.load(path, map_location="cpu", weights_only=False)["global_step"]
            except Exception:  # still being written
                pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at {path} before the run ended (exit code {process.poll()})")


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_final_metrics(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run(command(straight), capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    step = first_checkpoint(killed / "checkpoints" / "last.ckpt", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < step < 30 and not (killed / "metrics.json").exists()

    resumed = subprocess.run(command(killed, "ckpt_path=last"), capture_output=True, text=True, timeout=900,
                             cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr  # the resume is announced
    expected = json.loads((straight / "metrics.json").read_text())
    actual = json.loads((killed / "metrics.json").read_text())
    tests = sorted(k for k in expected if k.startswith("test/"))
    assert tests
    for key in tests:
        assert actual[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), key
