"""The console script end to end: clean errors for user mistakes, and sweeps that survive a failing job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from causal_engine.sweeps import main as sweep_report


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "causal_engine", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_user_error_is_one_message_without_traceback(tmp_path):
    result = cli("data=table", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "causal-engine: error: Missing required config value(s): data.path" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_a_default_run_prints_no_lightning_banners_and_ends_with_its_summary(tmp_path):
    result = cli(
        "experiment=structural_mlp", "trainer.max_epochs=1", "data.n_train=64", "data.n_test=50",
        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    for banner in ("GPU available", "TPU available", "Tip:", "LeafSpec", "Loaded model weights"):
        assert banner not in console, banner
    # Lightning's layer table and its footer are off; one line gives the model's size instead.
    for footer in ("Modules in eval mode", "Total params", "Trainable params"):
        assert footer not in console, footer
    assert "InterveneModule: 5.0 K parameters" in result.stdout
    assert "causal-engine: done" in result.stdout and "test/do_rmse" in result.stdout
    assert f"outputs:     {tmp_path / 'run'}/" in result.stdout


def test_help_lists_groups(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "causal-engine is powered by Hydra" in result.stdout
    assert "experiment:" in result.stdout and "trainer: cpu, ddp, debug" in result.stdout


@pytest.mark.slow
def test_failing_sweep_job_does_not_stop_the_others(tmp_path):
    # The default sweep directory (outputs/multiruns/<date>/<time> under the working directory).
    result = cli(
        "-m", "experiment=structural_mlp", "trainer=debug", "callbacks.progress_bar=null",
        "model.optimizer.lr=-1,0.01", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0  # the sweep as a whole reports the failure
    (sweep,) = (tmp_path / "outputs" / "multiruns").glob("*/*")
    assert not (sweep / "0" / "metrics.json").exists()
    assert "test/do_rmse" in json.loads((sweep / "1" / "metrics.json").read_text())

    text = sweep_report([str(sweep), "--metrics", "test/do_rmse"])
    assert "| 0 | -1 | failed | – |" in text
    assert "ConfigError: Config key 'model.optimizer.lr' = -1 is too small" in text
    assert "| 1 | 0.01 | ok |" in text


def test_slurm_preset_selects_submitit_and_batch_log_bar(tmp_path):
    hydra_cfg = cli("--cfg", "hydra", "launcher=slurm", cwd=tmp_path)
    assert hydra_cfg.returncode == 0, hydra_cfg.stderr
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in hydra_cfg.stdout
    job_cfg = cli("--cfg", "job", "launcher=slurm", cwd=tmp_path)
    assert "TQDMProgressBar" in job_cfg.stdout and "RichProgressBar" not in job_cfg.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [
        ["launcher=local"],  # joblib: one process per job
        # submitit's local executor: the same pickling and job-directory path as SLURM, without a cluster
        ["hydra/launcher=submitit_local", "callbacks=batch_logs", "hydra.launcher.timeout_min=10"],
    ],
    ids=["joblib", "submitit_local"],
)
def test_sweep_runs_through_parallel_launchers(tmp_path, launcher):
    result = cli(
        "-m", "experiment=structural_mlp", "trainer=debug", "data.n_train=200", *launcher,
        "model.optimizer.lr=0.01,0.02", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        metrics = json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())
        assert metrics["test/do_rmse"] >= 0.0
