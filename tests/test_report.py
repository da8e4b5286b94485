"""scripts/report.py collates a multirun: one row per job, failed jobs listed with their error."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("report", REPO / "scripts" / "report.py")
report = importlib.util.module_from_spec(spec)
sys.modules["report"] = report
spec.loader.exec_module(report)


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
    text = report.main([str(tmp_path), "--x", "n", "--y", "test/rmse", "--group", "model"])
    assert text.index("| 2 | a") < text.index("| 11 | a")  # jobs in numeric order
    assert "| 1 | a | 100 | 1 | ok | 0.6 |" in text
    assert "| 9 | b | 100 | 3 | failed | – |" in text
    assert "Failed jobs:" in text and "ValueError: bad value for n" in text
    # Two seeds at n=100: mean 0.65, t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.0707 / 1.414 = 0.635.
    assert "| a | 100 | 2 | 0.65 | ± 0.635 |" in text
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.png").exists()
    assert (tmp_path / "xy.png").exists()
