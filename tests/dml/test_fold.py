"""One fold's steps: every checkpoint a fold writes is data (weights only), never code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from causal_engine.dml.data import load_sample
from causal_engine.dml.fold import fit_fold
from causal_engine.dml.folds import stratified_folds

from .test_crossfit import TINY_VIDEO


def test_every_checkpoint_a_fold_writes_loads_as_plain_data(compose):
    # The default callbacks write checkpoints for the JEPA and both nuisances (whose best weights are restored in
    # memory); every file must load with weights_only=True (plain hyperparameters only).
    cfg = compose([o for o in TINY_VIDEO if o not in ("callbacks=none",)])
    sample = load_sample(cfg.data)
    fold = stratified_folds(sample.treatment, 3, n_rep=1, seed=0)[0][0]
    preds, _ = fit_fold(cfg, sample, fold, seed=1)
    assert all(np.isfinite(v).all() for v in preds.values())
    checkpoints = sorted(Path(cfg.paths.output_dir).rglob("*.ckpt"))
    assert {p.parts[-3] for p in checkpoints} == {"jepa", "outcome", "propensity"}
    for path in checkpoints:
        assert "state_dict" in torch.load(path, map_location="cpu", weights_only=True)
