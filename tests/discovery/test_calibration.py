"""Calibrated edge probabilities: the ECE maths, the Platt fit, the json sidecar and the reliability figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit, logit

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


def test_platt_fit_recovers_size_dependent_slope_and_intercept() -> None:
    rng = np.random.default_rng(0)
    d = rng.choice([5, 20, 80], size=30000)
    logits = 2 * rng.standard_normal(30000)
    log_d = np.log(d)
    labels = rng.random(30000) < expit((0.5 + 0.1 * log_d) * logits + (-1.0 + 0.3 * log_d))
    cal = fit_platt(logits, labels, d)
    # Fisher information of this design gives SEs of 0.026 / 0.009 (slope, per log d) and 0.040 / 0.013
    # (intercept, per log d); the tolerances are 5 SE.
    assert cal.slope[0] == pytest.approx(0.5, abs=0.13) and cal.slope[1] == pytest.approx(0.1, abs=0.045)
    assert cal.intercept[0] == pytest.approx(-1.0, abs=0.2) and cal.intercept[1] == pytest.approx(0.3, abs=0.065)
    assert cal.sizes == (5, 80)
    calibrated = cal.probabilities(expit(logits), d)
    single = fit_platt(logits, labels, np.full_like(d, 20))  # one size: the log d terms stay 0
    assert single.slope[1] == 0.0 and single.intercept[1] == 0.0
    for size in (5, 80):  # the fit is calibrated size by size, a single Platt pair at neither end
        mine = M.expected_calibration_error(calibrated[d == size], labels[d == size])
        theirs = M.expected_calibration_error(single.probabilities(expit(logits[d == size]), 20), labels[d == size])
        assert mine < theirs


def test_identity_calibration_changes_nothing_but_the_diagonal() -> None:
    p = np.array([[0.3, 0.8], [0.1, 0.6]])
    out = Calibration().probabilities(p)
    assert out[0, 1] == pytest.approx(0.8) and out[1, 0] == pytest.approx(0.1)
    assert out[0, 0] == 0.0 and out[1, 1] == 0.0


def test_graph_size_comes_from_the_matrix_and_is_clamped_to_the_fitted_range() -> None:
    cal = Calibration((1.0, 0.5), (0.0, -0.5), sizes=(5, 50))
    p = np.full((10, 10), 0.3)
    at_10 = cal.probabilities(p)
    assert at_10[0, 1] == pytest.approx(expit((1 + 0.5 * np.log(10)) * logit(0.3) - 0.5 * np.log(10)))
    assert np.diag(at_10).tolist() == [0.0] * 10
    assert cal.probabilities(np.full((3, 3), 0.3))[0, 1] == pytest.approx(cal.probabilities(p, 5)[0, 1])
    assert cal.probabilities(np.full(4, 0.3), np.array([2, 5, 50, 99])).tolist() == pytest.approx(
        [cal.probabilities(p, 5)[0, 1]] * 2 + [cal.probabilities(p, 50)[0, 1]] * 2
    )


def test_calibration_is_stored_beside_the_checkpoint_and_only_applies_to_its_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "pfn.pt"
    ckpt.write_bytes(b"weights v1")
    assert read_calibration(ckpt) is None
    (tmp_path / "pfn.json").write_text(json.dumps({"model": "pfn_a"}))
    assert read_calibration(ckpt) is None
    write_calibration(ckpt, Calibration((0.9, 0.05), (0.1, -0.2), (5, 100)), {"prior_ece_after": 0.01})
    stored = json.loads((tmp_path / "pfn.json").read_text())
    assert stored["model"] == "pfn_a" and stored["calibration"]["prior_ece_after"] == 0.01
    assert read_calibration(ckpt) == Calibration((0.9, 0.05), (0.1, -0.2), (5, 100))
    ckpt.write_bytes(b"weights v2")  # retrained: the old calibration must not be applied
    assert read_calibration(ckpt) is None


def test_a_calibration_stored_without_size_terms_reads_as_the_same_scaling_at_every_size(tmp_path: Path) -> None:
    ckpt = tmp_path / "pfn.pt"
    ckpt.write_bytes(b"weights")
    write_calibration(ckpt, Calibration(), {})
    stored = json.loads((tmp_path / "pfn.json").read_text())
    stored["calibration"].update(slope=0.8, intercept=-0.5)
    del stored["calibration"]["sizes"]
    (tmp_path / "pfn.json").write_text(json.dumps(stored))
    cal = read_calibration(ckpt)
    assert cal is not None and cal.slope == (0.8, 0.0) and cal.intercept == (-0.5, 0.0)
    p = np.full((6, 6), 0.4)
    assert cal.probabilities(p)[0, 1] == pytest.approx(expit(0.8 * logit(0.4) - 0.5))


def test_prior_edge_logits_pool_every_off_diagonal_pair() -> None:
    torch.manual_seed(0)
    net = ModelD(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=8).eval()
    prior = SeedPrior(num_obs=30, num_int_per_regime=5, intervention_values=[2.0], obs_only_share=0.5)
    logits, labels, sizes = prior_edge_logits(net, prior, sizes=[4, 6], graphs=3, seed=0)
    assert logits.shape == labels.shape == sizes.shape == (3 * 4 * 3 + 3 * 6 * 5,)
    assert (sizes[: 3 * 4 * 3] == 4).all() and (sizes[3 * 4 * 3 :] == 6).all()
    assert set(np.unique(labels)) <= {0.0, 1.0} and np.isfinite(logits).all()


def test_reliability_figure_draws_one_line_per_curve(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = rng.random(500)
    curves = {"model": M.reliability(p, rng.random(500) < p), "flat": M.reliability(p, rng.random(500) < 0.5)}
    fig = plots.reliability_figure(curves)
    assert len(fig.axes[0].lines) == 3  # the diagonal and two curves
    assert plots.save_figure(fig, tmp_path / "r.png").stat().st_size > 0
