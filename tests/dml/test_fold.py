"""One fold's steps: checkpoints are reloaded as data (weights only), never as code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from causal_engine.dml.data import load_sample
from causal_engine.dml.fold import fit_fold, load_best_weights
from causal_engine.dml.folds import stratified_folds

from .test_crossfit import TINY_VIDEO


class _RunsCode:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mknod, (str(self.path),))


def test_best_weights_reload_refuses_a_checkpoint_that_would_run_code(tmp_path):
    planted = tmp_path / "planted"
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(planted)}, ckpt)
    trainer = SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_path=str(ckpt)))
    with pytest.raises(pickle.UnpicklingError):
        load_best_weights(trainer, torch.nn.Linear(1, 1))
    assert not planted.exists()


def test_every_checkpoint_a_fold_writes_loads_as_plain_data(compose):
    # The default callbacks write checkpoints for the JEPA and both nuisances; the fold reloads the nuisances'
    # best ones itself, and every file must load with weights_only=True (plain hyperparameters only).
    cfg = compose([o for o in TINY_VIDEO if o not in ("callbacks=none",)])
    sample = load_sample(cfg.data)
    fold = stratified_folds(sample.treatment, 3, n_rep=1, seed=0)[0][0]
    preds, _ = fit_fold(cfg, sample, fold, seed=1)
    assert all(np.isfinite(v).all() for v in preds.values())
    checkpoints = sorted(Path(cfg.paths.output_dir).rglob("*.ckpt"))
    assert {p.parts[-3] for p in checkpoints} == {"jepa", "outcome", "propensity"}
    for path in checkpoints:
        assert "state_dict" in torch.load(path, map_location="cpu", weights_only=True)
