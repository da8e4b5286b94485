"""Calibrated edge probabilities: the ECE maths, the Platt fit, the json sidecar and the reliability figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit

from causal_engine import metrics as M
from causal_engine import plots
from causal_engine.discovery.calibration import (
    Calibration,
    fit_platt,
    prior_edge_logits,
    read_calibration,
    write_calibration,
)
from causal_engine.discovery.models import ModelD
from causal_engine.scm.prior import SeedPrior


def test_ece_of_hand_bins() -> None:
    probs = np.array([0.1, 0.1, 0.9, 0.9, 0.55])
    labels = np.array([0, 0, 1, 1, 1])
    confidence, rate, count = M.reliability(probs, labels, bins=10)
    assert count.tolist() == [0, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert confidence[1] == pytest.approx(0.1) and rate[1] == 0.0 and np.isnan(rate[0])
    # (2 * |0 - 0.1| + 1 * |1 - 0.55| + 2 * |1 - 0.9|) / 5
    assert M.expected_calibration_error(probs, labels, bins=10) == pytest.approx((0.2 + 0.45 + 0.2) / 5)
    assert M.expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_platt_fit_recovers_slope_and_intercept() -> None:
    rng = np.random.default_rng(0)
    logits = 2 * rng.standard_normal(20000)
    labels = rng.random(20000) < expit(0.5 * logits - 1.0)
    cal = fit_platt(logits, labels)
    # Fisher information gives SEs near 0.009 (slope) and 0.02 (intercept) here; the tolerances are ~5 SE.
    assert cal.slope == pytest.approx(0.5, abs=0.05) and cal.intercept == pytest.approx(-1.0, abs=0.1)
    calibrated = cal.probabilities(expit(logits))
    assert M.expected_calibration_error(calibrated, labels) < M.expected_calibration_error(expit(logits), labels)


def test_identity_calibration_changes_nothing_but_the_diagonal() -> None:
    p = np.array([[0.3, 0.8], [0.1, 0.6]])
    out = Calibration().probabilities(p)
    assert out[0, 1] == pytest.approx(0.8) and out[1, 0] == pytest.approx(0.1)
    assert out[0, 0] == 0.0 and out[1, 1] == 0.0


def test_calibration_is_stored_beside_the_checkpoint_and_only_applies_to_its_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "pfn.pt"
    ckpt.write_bytes(b"weights v1")
    assert read_calibration(ckpt) is None
    (tmp_path / "pfn.json").write_text(json.dumps({"model": "pfn_a"}))
    assert read_calibration(ckpt) is None
    write_calibration(ckpt, Calibration(0.9, 0.1), {"prior_ece_after": 0.01})
    stored = json.loads((tmp_path / "pfn.json").read_text())
    assert stored["model"] == "pfn_a" and stored["calibration"]["prior_ece_after"] == 0.01
    assert read_calibration(ckpt) == Calibration(0.9, 0.1)
    ckpt.write_bytes(b"weights v2")  # retrained: the old calibration must not be applied
    assert read_calibration(ckpt) is None


def test_prior_edge_logits_pool_every_off_diagonal_pair() -> None:
    torch.manual_seed(0)
    net = ModelD(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=8).eval()
    prior = SeedPrior(num_obs=30, num_int_per_regime=5, intervention_values=[2.0], obs_only_share=0.5)
    logits, labels = prior_edge_logits(net, prior, sizes=[4, 6], graphs=3, seed=0)
    assert logits.shape == labels.shape == (3 * 4 * 3 + 3 * 6 * 5,)
    assert set(np.unique(labels)) <= {0.0, 1.0} and np.isfinite(logits).all()


def test_reliability_figure_draws_one_line_per_curve(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = rng.random(500)
    curves = {"model": M.reliability(p, rng.random(500) < p), "flat": M.reliability(p, rng.random(500) < 0.5)}
    fig = plots.reliability_figure(curves)
    assert len(fig.axes[0].lines) == 3  # the diagonal and two curves
    assert plots.save_figure(fig, tmp_path / "r.png").stat().st_size > 0
