"""Every experiment preset composes and runs end to end with fast_dev_run (trainer=debug).

Presets that are multiruns by themselves (`hydra.mode: MULTIRUN`, e.g. the tour) run through the console
script, since only Hydra's launcher runs their jobs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.types import RunMode

from causal_engine.run import run

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))


def test_there_are_presets():
    assert EXPERIMENTS, "conf/experiment/ holds no presets"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_preset_runs_with_fast_dev_run(experiment, compose, tmp_path):
    cfg = compose([f"experiment={experiment}", "trainer=debug"])
    if cfg.hydra.mode == RunMode.MULTIRUN:
        # Exactly as `make run` does it: the default sweep directory, which every job must share.
        cmd = [sys.executable, "-m", "causal_engine", f"experiment={experiment}", "trainer=debug",
               "callbacks.progress_bar=null"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        (sweep,) = (tmp_path / "outputs" / "multiruns").glob("*/*")
        jobs = sorted(sweep.glob("*/metrics.json"))
        assert jobs and all(json.loads(p.read_text()) for p in jobs)
        if experiment == "tour":
            assert f"{len(jobs)} of {len(jobs)} stops completed" in result.stdout
        return
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert set(json.loads((out / "metrics.json").read_text())) == set(metrics)
    assert (out / "config_resolved.yaml").exists()
