"""scripts/train_pfn_checkpoint.py refuses to resume a state dir on another recipe or another prior."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_pfn_checkpoint.py"


def script():
    spec = importlib.util.spec_from_file_location("train_pfn_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("recorded", "message"),
    [
        ({"overrides": ["experiment=pfn"]}, "holds a different recipe"),
        ({"prior": {"_target_": "causal_engine.scm.prior.BroadPrior", "noise_scale": [0.2, 1.0]}}, "another prior"),
    ],
)
def test_a_state_dir_is_not_resumed_on_another_recipe_or_prior(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict, message: str
) -> None:
    train = script()
    args = argparse.Namespace(model="pfn_a", steps=10, max_nodes=100, val_every=500, overrides=[])
    recipe = {"overrides": train.overrides_for(args), "threads": 1, **recorded}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    argv = [str(SCRIPT), "--steps", "10", "--val-every", "500", "--threads", str(torch.get_num_threads())]
    monkeypatch.setattr(sys, "argv", [*argv, "--state-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=message):
        train.main()
    assert not (tmp_path / "run" / "csv").exists()  # refused before a session was started
    assert json.loads((tmp_path / "recipe.json").read_text()) == recipe  # and the record is untouched
