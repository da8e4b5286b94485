"""The tour's summary screen: each stop's headline filled from its own metrics; failures named."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from causal_engine.tour import headline, render, run_summary


def make_job(sweep: Path, num: int, tags: str, template: str, metrics: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(json.dumps({"tags": tags, "tour_headline": template}))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_headline_formats_slash_keys_and_names_missing_metrics():
    assert headline("ATE {dml/ate:.2f} [{dml/ci_low:.1f}]", {"dml/ate": 1.234, "dml/ci_low": 0.9}) == "ATE 1.23 [0.9]"
    assert "needs metric 'dml/se'" in headline("{dml/se}", {"dml/ate": 1.0})


def test_render_lists_every_stop_in_job_order(tmp_path):
    make_job(
        tmp_path,
        0,
        "tour_jepa_dml",
        "ATE {dml/ate:.3f} vs truth {dml/true_ate:.1f}",
        {"dml/ate": 1.02, "dml/true_ate": 1.0},
    )
    make_job(tmp_path, 10, "tour_mlp", "RMSE {test/do_rmse:.2f} [x2|do(x1=v)]", {"test/do_rmse": 0.51})
    make_job(tmp_path, 2, "tour_pfn", "SHD {x}", None)
    console = Console(record=True, width=200)
    stops = render(tmp_path, console)
    assert [s["name"] for s in stops] == ["tour_jepa_dml", "tour_pfn", "tour_mlp"]
    text = console.export_text()
    assert "ATE 1.020 vs truth 1.0" in text
    assert "RMSE 0.51 [x2|do(x1=v)]" in text  # square brackets survive (not read as markup)
    assert "FAILED" in text and "2 of 3 stops completed" in text
    assert f"tensorboard --logdir {tmp_path}" in text


def test_run_summary_shows_key_metrics_before_training_curves_and_the_output_dir(tmp_path):
    metrics = {"val/loss": 0.3, "hp/do_rmse": 0.5, "test/do_rmse": 0.5, "dml/ate": 1.25, "train/loss": 0.2}
    console = Console(record=True, width=200)
    shown = run_summary(metrics, tmp_path, console)
    assert shown == ["dml/ate", "test/do_rmse"]
    text = console.export_text()
    assert "dml/ate" in text and "1.25" in text and "val/loss" not in text
    assert f"all 5 in {tmp_path / 'metrics.json'}" in text and f"outputs:     {tmp_path}/" in text
