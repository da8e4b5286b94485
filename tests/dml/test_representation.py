"""`dml.representation`: what the nuisances see (the data's features, raw pixels, the true confounders), and the
truth metrics a sweep over it averages (`experiment=jepa_dml_compare`)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from causal_engine.dml.data import CausalSample, DMLInputError, with_representation
from causal_engine.run import run

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
    metrics = run(compose([*table_overrides(_table(tmp_path / "obs.csv")), "dml.nuisance_epochs=1"]))
    assert "dml/bias" not in metrics and "dml/covers" not in metrics
