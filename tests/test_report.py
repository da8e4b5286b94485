"""scripts/report.py (causal_engine.sweeps) collates a multirun: one row per job, failed jobs listed with their
error, and each variant's mean ± SD over the seeds."""

from __future__ import annotations

import json
from pathlib import Path

from causal_engine.sweeps import main


def make_job(root: Path, num: int, overrides: list[str], metrics: dict | None, log: str = "") -> None:
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "run.log").write_text(log)


def test_report_tables_jobs_and_lists_failures(tmp_path):
    for seed in (1, 2):
        make_job(tmp_path, seed, [f"seed={seed}", "model=a", "n=100"], {"test/rmse": 0.5 + seed / 10})
        make_job(tmp_path, 10 + seed, [f"seed={seed}", "model=a", "n=1000"], {"test/rmse": 0.2 + seed / 10})
    make_job(tmp_path, 9, ["seed=3", "model=b", "n=100"], None, "[ERROR] ValueError: bad value for n\n")
    text = main([str(tmp_path), "--x", "n", "--y", "test/rmse", "--group", "model"])
    assert text.index("| 2 | a") < text.index("| 11 | a")  # jobs in numeric order
    assert "| 1 | a | 100 | 1 | ok | 0.6 |" in text
    assert "| 9 | b | 100 | 3 | failed | – |" in text
    assert "Failed jobs:" in text and "ValueError: bad value for n" in text
    # Two seeds at n=100: mean 0.65, t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.0707 / 1.414 = 0.635.
    assert "| a | 100 | 2 | 0.65 | ± 0.635 |" in text
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.png").exists()
    assert (tmp_path / "xy.png").exists()


def test_a_sweep_over_seeds_reports_each_variants_mean_and_sd(tmp_path):
    for num, (model, seed) in enumerate((m, s) for m in "ab" for s in (1, 2, 3)):
        rmse = {"a": 0.5, "b": 1.0}[model] + seed / 10  # a: 0.6, 0.7, 0.8; b: 1.1, 1.2, 1.3
        metrics = None if (model, seed) == ("b", 3) else {"test/rmse": rmse, "test/n": 4.0}
        make_job(tmp_path, num, [f"seed={seed}", f"model={model}"], metrics, "[ERROR] RuntimeError: diverged\n")
    text = main([str(tmp_path)])
    assert "Mean ± SD over seed:" in text
    assert "| model | runs | test/n | test/rmse |" in text
    assert "| a | 3 | 4 ± 0 | 0.7 ± 0.1 |" in text  # sample SD (ddof 1) of 0.6, 0.7, 0.8
    assert "| b | 2 | 4 ± 0 | 1.15 ± 0.07071 |" in text  # the failed seed is left out of the mean
    one = main([str(tmp_path), "--metrics", "test/rmse", "--over", "model"])  # a variant per seed, over models
    assert "| seed | runs | test/rmse |" in one and "| 3 | 1 | 0.8 ± – |" in one
