"""`dml.representation`: what the nuisances see (the data's features, raw pixels, the true confounders), the
truth metrics a sweep over it averages (`experiment=jepa_dml_compare`), and `dml.pretrain=once`."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from causal_engine.dml.crossfit import run_crossfit
from causal_engine.dml.data import CausalSample, DMLInputError, load_sample, with_representation
from causal_engine.dml.pretrain import pretrained_sample
from causal_engine.dml.simulate import CONFOUNDERS
from causal_engine.run import run
from causal_engine.train import with_output_dir

from .conftest import table_overrides
from .test_analyses import _table
from .test_crossfit import TINY_VIDEO


def _videos(confounders: np.ndarray | None) -> CausalSample:
    videos = torch.arange(6 * 2 * 3 * 4 * 5, dtype=torch.float32).reshape(6, 2, 3, 4, 5)
    return CausalSample(videos, np.array([0.0, 1.0] * 3), np.arange(6.0), confounders, 1.0)


def test_pixels_flatten_each_video_and_oracle_takes_the_confounders():
    u = np.random.default_rng(0).normal(size=(6, 3))
    sample = _videos(u)
    pixels = with_representation(sample, "pixels")
    assert pixels.features.shape == (6, 120)
    torch.testing.assert_close(pixels.features[4], sample.features[4].flatten(), rtol=0, atol=0)
    oracle = with_representation(sample, "oracle")
    np.testing.assert_array_equal(oracle.features.numpy(), u.astype(np.float32))
    assert with_representation(sample, "features") is sample
    assert oracle.treatment is sample.treatment and oracle.true_ate == 1.0


def test_the_simulators_oracle_features_carry_the_confounders_names(compose):
    oracle = with_representation(load_sample(compose(TINY_VIDEO).data), "oracle")
    assert oracle.feature_names == CONFOUNDERS and oracle.features.shape == (120, len(CONFOUNDERS))


def test_oracle_without_confounders_and_pixels_without_videos_are_refused():
    with pytest.raises(DMLInputError, match="only the simulator knows"):
        with_representation(_videos(None), "oracle")
    table = CausalSample(torch.zeros(6, 2), np.array([0.0, 1.0] * 3), np.arange(6.0))
    with pytest.raises(DMLInputError, match="representation=pixels"):
        with_representation(table, "pixels")


@pytest.mark.parametrize("representation", ["pixels", "oracle"])
def test_crossfit_on_pixels_or_oracle_fits_no_jepa_and_reports_bias_and_coverage(compose, representation):
    cfg = compose([*TINY_VIDEO, f"dml.representation={representation}"])
    metrics = run(cfg)
    assert metrics["dml/bias"] == pytest.approx(metrics["dml/ate"] - 1.0, abs=1e-12)
    assert metrics["dml/covers"] == float(metrics["dml/ci_low"] <= 1.0 <= metrics["dml/ci_high"])
    assert "dml/probe_r2" not in metrics  # no representation was learnt, so there is nothing to probe
    assert not list(Path(cfg.paths.output_dir).glob("rep0/*/jepa"))


def test_real_data_has_no_truth_metrics(compose, tmp_path):
    metrics = run(compose([*table_overrides(_table(tmp_path / "obs.csv")), "dml.convergence.max_epochs=2"]))
    assert "dml/bias" not in metrics and "dml/covers" not in metrics


def test_pretrain_once_fits_one_label_free_jepa_and_resumes_from_its_embeddings(compose):
    cfg = compose([*TINY_VIDEO, "dml.pretrain=once"])
    out = run_crossfit(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "pretrain" / "jepa").is_dir() and not list(run_dir.glob("rep0/*/jepa"))
    assert all("jepa" not in r.trained_rows for r in out.records)  # the folds fit nuisances only
    with np.load(run_dir / "pretrain" / "features.npz") as saved:
        np.testing.assert_array_equal(saved["features"], out.sample.features.numpy())
    again = run_crossfit(cfg)  # resumed into the same directory: embeddings and folds reused
    assert again.result.estimate == out.result.estimate


def test_pretrain_once_is_refused_on_tables(compose, tmp_path):
    with pytest.raises(DMLInputError, match="dml.pretrain=per_fold"):
        run_crossfit(compose([*table_overrides(_table(tmp_path / "obs.csv")), "dml.pretrain=once"]))


def test_pretrained_embeddings_do_not_depend_on_the_labels(compose, tmp_path):
    cfg = compose([*TINY_VIDEO, "dml.pretrain=once"])
    sample = load_sample(cfg.data)
    first = pretrained_sample(with_output_dir(cfg, tmp_path / "a"), sample, "x").features
    flipped = replace(sample, treatment=1.0 - sample.treatment, outcome=sample.outcome[::-1].copy())
    second = pretrained_sample(with_output_dir(cfg, tmp_path / "b"), flipped, "x").features
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_pretrained_features_can_be_benchmarked_and_projected_on(compose):
    overrides = ["dml.pretrain=once", "dml.sensitivity.benchmark=[z0,z1]", "dml.blp.covariates=[z0]"]
    metrics = run(compose([*TINY_VIDEO, *overrides]))
    assert 0.0 <= metrics["dml/sensitivity/benchmark/cf_y"] <= 1.0
    assert "dml/blp/z0/se" in metrics and "dml/sensitivity/rva" in metrics
