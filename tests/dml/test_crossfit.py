"""The cross-fitting task end to end at a tiny size: no leakage, honest output, clear errors on bad input."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_engine.config import ConfigError
from causal_engine.dml.crossfit import run_crossfit
from causal_engine.dml.data import load_sample
from causal_engine.dml.fold import fit_fold
from causal_engine.dml.folds import stratified_folds
from causal_engine.errors import UserError
from causal_engine.run import run

from .conftest import table_overrides

TINY_MODEL = [
    "experiment=jepa_dml",
    "model.rep_dim=12",
    "model.heads=2",
    "model.pred_dim=6",
    "model.depth=1",
    "model.pred_depth=1",
    "dml.k_folds=3",
    "dml.jepa_epochs=1",
    "dml.convergence.patience=1",
    "dml.convergence.max_epochs=2",
    "callbacks=none",
    "logger=csv",
]
TINY_VIDEO = [*TINY_MODEL, "data.n_samples=120", "data.dims=[1,4,8,8]"]


def test_no_fold_model_ever_sees_its_held_out_rows(compose):
    out = run_crossfit(compose([*TINY_VIDEO, "dml.n_rep=2"]))
    assert len(out.records) == 3 * 2
    for rec in out.records:
        assert set(rec.trained_rows) == {"jepa", "outcome", "propensity"}
        for rows in rec.trained_rows.values():
            assert np.intersect1d(rows, rec.fold.test).size == 0
            assert np.isin(rows, rec.fold.train).all()
            assert len(rows) == len(rec.fold.train)  # every training row is used (train + inner val)
    for rep, preds in zip(out.plan, out.predictions, strict=True):
        tests = np.sort(np.concatenate([f.test for f in rep]))
        np.testing.assert_array_equal(tests, np.arange(120))
        assert all(np.isfinite(v).all() for v in preds.values())
    assert out.result.n_rep == 2 and len(set(out.result.rep_estimates)) == 2


def test_held_out_predictions_do_not_depend_on_held_out_labels(compose):
    # Stronger than the index check above: refit one fold with its held-out treatments and outcomes replaced;
    # if any model saw them (directly, through standardisation, checkpoint selection, ...) its predictions move.
    cfg = compose(TINY_VIDEO)
    sample = load_sample(cfg.data)
    fold = stratified_folds(sample.treatment, 3, n_rep=1, seed=0)[0][1]
    first, _ = fit_fold(cfg, sample, fold, seed=5)
    t, y = sample.treatment.copy(), sample.outcome.copy()
    t[fold.test], y[fold.test] = 1.0 - t[fold.test], y[fold.test] + 100.0
    second, _ = fit_fold(cfg, replace(sample, treatment=t, outcome=y), fold, seed=5)
    for key in ("g0", "g1", "m"):
        np.testing.assert_array_equal(first[key], second[key])


def test_jepa_dml_experiment_writes_metrics_and_figures(compose):
    cfg = compose(TINY_VIDEO)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    for key in (
        "dml/ate",
        "dml/se",
        "dml/ci_low",
        "dml/ci_high",
        "dml/n",
        "dml/clipped_share",
        "dml/propensity_min",
        "dml/propensity_max",
        "dml/naive",
        "dml/true_ate",
        "dml/probe_r2",
        "dml/fold0/outcome_mse",
        "dml/fold2/propensity_bce",
        "dml/fold1/probe_r2",
    ):
        assert key in saved, key
    assert saved["dml/ci_low"] < saved["dml/ate"] < saved["dml/ci_high"]
    assert saved["dml/n"] == 120 and metrics["dml/true_ate"] == 1.0
    assert (out / "figures" / "propensity_overlap.png").stat().st_size > 0
    assert (out / "figures" / "ci.png").stat().st_size > 0
    assert (out / "rep0" / "fold2" / "jepa").is_dir()  # each fold logged under its own directory


def test_same_seed_gives_the_same_estimate(compose):
    a = run_crossfit(compose([*TINY_VIDEO, "dml.k_folds=2"])).result.estimate
    b = run_crossfit(compose([*TINY_VIDEO, "dml.k_folds=2"])).result.estimate
    assert a == b


def _table(path: Path, n: int = 600, seed: int = 0, **columns) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-x[:, 0]))).astype(float)
    y = x[:, 0] + 0.5 * x[:, 1] + 1.0 * d + rng.normal(scale=0.5, size=n)
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "t": d, "y": y, **columns})
    frame.to_csv(path, index=False)
    return path


def test_table_data_skips_the_jepa_and_covers_the_effect(compose, tmp_path):
    path = _table(tmp_path / "obs.csv")
    overrides = ["dml.learner=network", "dml.convergence.max_epochs=15", "dml.convergence.patience=5"]
    out = run_crossfit(compose([*table_overrides(path), *overrides, "dml.nuisance_batch_size=32"]))
    assert set(out.records[0].trained_rows) == {"outcome", "propensity"}
    r = out.result
    # Neural nuisances on 600 rows: within 3 reported SEs of the truth (OLS on this draw is 1.4 SEs off;
    # seeds 0-3 give 1.6, 0.7, -0.5, -1.1 SEs).
    assert abs(r.estimate - 1.0) < 3 * r.se, r
    assert abs(out.naive - 1.0) > 10 * r.se  # confounded: the naive difference misses by far


@pytest.mark.parametrize(
    ("column", "edit", "message"),
    [
        ("t", lambda f: f.assign(t=f.t * 2.0), "binary"),
        ("t", lambda f: f.assign(t=np.where(np.arange(len(f)) < 2, 1.0, 0.0)), "treated arm has 2 row"),
        ("y", lambda f: f.assign(y=np.where(np.arange(len(f)) == 7, np.nan, f.y)), "row 8"),
    ],
)
def test_bad_tables_stop_with_a_clear_message(compose, tmp_path, column, edit, message):
    path = _table(tmp_path / "obs.csv", n=60)
    edit(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(UserError, match=message):
        run_crossfit(compose(table_overrides(path)))


def test_no_overlap_stops_above_the_clipped_share_limit(compose, tmp_path):
    path = _table(tmp_path / "obs.csv", n=60)
    overrides = [*table_overrides(path), "dml.trim=0.49", "dml.max_clipped_share=0.0"]
    with pytest.raises(UserError, match="no overlap: .* dml.max_clipped_share=0.0"):
        run_crossfit(compose(overrides))


def _video_file_overrides(tmp_path: Path) -> list[str]:
    """`data=video_files` on v.npy + v.csv in `tmp_path`, with the tiny JEPA."""
    return [
        *TINY_MODEL,
        "data=video_files",
        f"data.videos={tmp_path / 'v.npy'}",
        f"data.table={tmp_path / 'v.csv'}",
        "data.treatment=t",
        "data.outcome=y",
    ]


def test_video_files_length_mismatch_is_reported(compose, tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((10, 1, 4, 8, 8), dtype=np.float32))
    pd.DataFrame({"t": [0, 1] * 6, "y": np.arange(12.0)}).to_csv(tmp_path / "v.csv", index=False)
    overrides = _video_file_overrides(tmp_path)
    with pytest.raises(UserError, match="12 rows but data.videos has 10 videos"):
        run_crossfit(compose(overrides))


def test_video_files_run_end_to_end(compose, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", rng.normal(size=(40, 1, 4, 8, 8)).astype(np.float32))
    pd.DataFrame({"t": [0, 1] * 20, "y": rng.normal(size=40)}).to_csv(tmp_path / "v.csv", index=False)
    overrides = _video_file_overrides(tmp_path)
    out = run_crossfit(compose(overrides))
    assert out.result.n == 40 and out.sample.true_ate is None and out.records[0].probe_r2 is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dml.k_folds=1", "dml.k_folds"),
        ("dml.trim=0.5", "dml.trim"),
        ("data.dims=[1,8,16]", "data.dims"),
        ("data.n_samples=0", "data.n_samples"),
        ("dml.score=late", "dml.score"),
    ],
)
def test_bad_dml_config_fails_before_any_work(compose, override, key):
    with pytest.raises(ConfigError, match=key):
        run(compose([*TINY_VIDEO, override]))


def test_nan_in_videos_is_reported_with_its_row(compose, tmp_path):
    videos = np.zeros((12, 1, 4, 8, 8), dtype=np.float32)
    videos[5, 0, 1, 2, 3] = np.nan
    np.save(tmp_path / "v.npy", videos)
    pd.DataFrame({"t": [0, 1] * 6, "y": np.arange(12.0)}).to_csv(tmp_path / "v.csv", index=False)
    overrides = _video_file_overrides(tmp_path)
    with pytest.raises(UserError, match=r"NaN/inf \(first at row 5\)"):
        run_crossfit(compose(overrides))
