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
# fast_dev_run limits the Lightning fits, not the fold loop's embedding of every video per fold (most of a video
# preset's time at its 2000 videos): fewer videos keep the same path.
FEWER_ROWS = {"jepa_dml": ["data.n_samples=250"], "jepa_dml_compare": ["data.n_samples=250"]}


def test_there_are_presets():
    assert EXPERIMENTS, "conf/experiment/ holds no presets"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_preset_runs_with_fast_dev_run(experiment, compose, tmp_path):
    overrides = [f"experiment={experiment}", "trainer=debug", *FEWER_ROWS.get(experiment, [])]
    cfg = compose(overrides)
    if cfg.hydra.mode == RunMode.MULTIRUN:
        # Exactly as `make run` does it: the default sweep directory, which every job must share.
        cmd = [sys.executable, "-m", "causal_engine", *overrides, "callbacks.progress_bar=null"]
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
