"""`task=evaluate ckpt_path=<best>` reproduces the test metrics that `task=fit` reported for that checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from causal_engine.errors import UserError
from causal_engine.run import run

TINY = [
    "experiment=structural_mlp",
    "data.n_train=200",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
]


def test_evaluate_from_best_checkpoint_gives_the_fit_test_metrics(compose):
    fit_cfg = compose(TINY)
    fitted = run(fit_cfg)
    (best,) = (Path(fit_cfg.paths.output_dir) / "checkpoints").glob("best-*.ckpt")
    evaluated = run(compose([*TINY, "task=evaluate", f"ckpt_path={best}"]))
    test_fit = {k: v for k, v in fitted.items() if k.startswith("test/")}
    test_eval = {k: v for k, v in evaluated.items() if k.startswith("test/")}
    assert test_fit and set(test_eval) == set(test_fit)
    for name, value in test_fit.items():
        assert test_eval[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_evaluate_without_a_checkpoint_names_ckpt_path(compose):
    with pytest.raises(UserError, match="ckpt_path"):
        run(compose([*TINY, "task=evaluate"]))
