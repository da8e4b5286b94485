"""Data-parallel training on CPU: two gloo processes, as `trainer=ddp trainer.accelerator=cpu trainer.devices=2`.

Lightning's DDP launcher re-executes the command line, so this runs the real console entry point in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from causal_engine.dml.data import load_sample
from causal_engine.dml.folds import stratified_folds
from causal_engine.dml.scores import aggregate, score_elements

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


# Two gloo processes on CPU, each fold's fits under DDP; checkpoints stay on (best-weights loading is exercised).
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false",
           "callbacks.progress_bar=null", "logger=csv"]  # fmt: skip
TINY_JEPA_DML = [
    "experiment=jepa_dml", "data.n_samples=48", "data.dims=[1,4,8,8]", "model.rep_dim=12", "model.heads=2",
    "model.pred_dim=6", "model.depth=1", "model.pred_depth=1", "dml.k_folds=2", "dml.jepa_epochs=1",
    "dml.convergence.patience=1", "dml.convergence.max_epochs=2",
]  # fmt: skip


def _run_ddp(tmp_path: Path, overrides: list[str]) -> Path:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "causal_engine", *overrides, *DDP_CPU, f"hydra.run.dir={out}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _check_crossfit_outputs(out: Path, cfg: DictConfig) -> list[np.ndarray]:
    """One writer, complete OOF files, and an estimate equal to the score module's on the gathered OOF.

    Returns the held-out rows of each saved fold, in fold order.
    """
    k_folds, sample = int(cfg.dml.k_folds), load_sample(cfg.data)
    n = len(sample)
    files = sorted((out / "rep0").glob("fold*/oof.npz"))
    assert [f.parent.name for f in files] == [f"fold{k}" for k in range(k_folds)]
    oof = {key: np.full(n, np.nan) for key in ("g0", "g1", "m")}
    tests = []
    for path in files:
        with np.load(path) as saved:
            tests.append(saved["test"])
            for key in oof:
                assert saved[key].shape == saved["test"].shape
                oof[key][saved["test"]] = saved[key]
    # Every row is held out in exactly one fold and has a finite prediction there.
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(n))
    assert all(np.isfinite(v).all() for v in oof.values())

    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["dml/ate"]) and metrics["dml/se"] > 0
    elements = score_elements("ate", sample.outcome, sample.treatment, oof, trim=cfg.dml.trim)
    expected = aggregate("ate", [elements], level=cfg.dml.level)
    assert metrics["dml/ate"] == pytest.approx(expected.estimate, rel=1e-12, abs=1e-12)
    assert metrics["dml/se"] == pytest.approx(expected.se, rel=1e-12)

    # Both ranks ran the whole loop to the same estimate; only rank 0 wrote the fold files.
    logs = {name: (out / name).read_text() for name in ("run.log", "train_ddp_process_1.log")}
    final = [[line.split("] - ")[1] for line in text.splitlines() if "DML ate =" in line] for text in logs.values()]
    assert len(final[0]) == 1 and final[0] == final[1]
    assert logs["run.log"].count(": saved ") == k_folds
    assert ": saved " not in logs["train_ddp_process_1.log"]
    return tests


@pytest.mark.slow
def test_jepa_dml_fold_loop_gathers_out_of_fold_predictions_under_ddp(
    tmp_path: Path, compose: Callable[[list[str]], DictConfig]
):
    out = _run_ddp(tmp_path, TINY_JEPA_DML)
    _check_crossfit_outputs(out, compose(TINY_JEPA_DML))
    assert (out / "figures" / "ci.png").stat().st_size > 0
    assert (out / "rep0" / "fold1" / "jepa" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_library_learners_on_jepa_embeddings_run_on_rank_zero_and_reach_every_rank_under_ddp(
    tmp_path: Path, compose: Callable[[list[str]], DictConfig]
):
    # The JEPA fits under DDP (the process group exists), then rank 0 fits the forests and broadcasts their
    # predictions: both ranks must end with the same out-of-fold arrays and estimate.
    overrides = [*TINY_JEPA_DML, "dml.learner=tabular", "dml/tabular=forest", "dml.tabular.outcome.n_estimators=10",
                 "dml.tabular.propensity.n_estimators=10"]  # fmt: skip
    out = _run_ddp(tmp_path, overrides)
    _check_crossfit_outputs(out, compose(overrides))


@pytest.mark.slow
def test_tabular_fold_loop_under_ddp_matches_the_fold_plan_and_resumes(
    tmp_path: Path, compose: Callable[[list[str]], DictConfig]
):
    rng = np.random.default_rng(0)
    a = rng.normal(size=61)  # odd: one held-out fold splits unevenly over two ranks, so the sampler pads
    t = (rng.random(61) < 1 / (1 + np.exp(-a))).astype(float)
    path = tmp_path / "obs.csv"
    pd.DataFrame({"a": a, "t": t, "y": 2 * t + a + rng.normal(size=61)}).to_csv(path, index=False)
    overrides = ["task=crossfit", "data=table", f"data.path={path}", "data.treatment=t", "data.outcome=y",
                 "data.covariates=[a]", "dml.k_folds=2", "dml.learner=network", "dml.convergence.patience=1",
                 "dml.convergence.max_epochs=2"]  # fmt: skip
    out = _run_ddp(tmp_path, overrides)
    cfg = compose(overrides)
    tests = _check_crossfit_outputs(out, cfg)
    plan = stratified_folds(t, 2, seed=cfg.dml.split_seed)[0]
    for fold, test in zip(plan, tests, strict=True):
        np.testing.assert_array_equal(test, fold.test)

    # Resume under DDP: fold 0 is reused by both ranks (rank 1 reads it when Lightning starts it at the first
    # fit), fold 1 is refitted and saved once, and the estimate is the uninterrupted run's.
    first = json.loads((out / "metrics.json").read_text())
    (out / "rep0" / "fold1" / "oof.npz").unlink()
    before = {name: len((out / name).read_text()) for name in ("run.log", "train_ddp_process_1.log")}
    _run_ddp(tmp_path, overrides)
    rerun = {name: (out / name).read_text()[start:] for name, start in before.items()}
    assert all("rep 0 fold 0: reusing" in text for text in rerun.values())
    assert rerun["run.log"].count(": saved ") == 1 and "rep 0 fold 1: saved" in rerun["run.log"]
    assert ": saved " not in rerun["train_ddp_process_1.log"]
    again = json.loads((out / "metrics.json").read_text())
    assert again["dml/ate"] == pytest.approx(first["dml/ate"], abs=1e-9)
    assert again["dml/se"] == pytest.approx(first["dml/se"], abs=1e-9)
