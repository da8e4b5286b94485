"""Every experiment preset composes and runs end to end with fast_dev_run (trainer=debug)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from causal_engine.run import run

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))


def test_there_are_presets():
    assert EXPERIMENTS, "conf/experiment/ holds no presets"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_preset_runs_with_fast_dev_run(experiment, compose):
    cfg = compose([f"experiment={experiment}", "trainer=debug"])
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert set(json.loads((out / "metrics.json").read_text())) == set(metrics)
    assert (out / "config_resolved.yaml").exists()
