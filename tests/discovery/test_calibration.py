"""Calibrated edge probabilities: the ECE maths and its sampling band, the isotonic fit per size, the maps per kind
of table, the json sidecar, the reliability figure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from causal_engine import metrics as M
from causal_engine import plots
from causal_engine.discovery.calibration import (
    TAIL,
    Calibration,
    TableCalibration,
    calibrated,
    fit_isotonic,
    prior_edge_logits,
    read_calibration,
    write_calibration,
)
from causal_engine.discovery.data import fixed_set
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


def test_calibrated_ece_band_is_the_sampling_error_of_a_calibrated_model() -> None:
    assert M.calibrated_ece_band(np.array([0.0, 1.0, 1.0])) == (0.0, 0.0)  # certain labels: no sampling error
    # 100 pairs at 0.5 in one bin: ECE = |k / 100 - 1/2|, k ~ Binomial(100, 1/2), whose mean is C(100, 50) / 2^101
    exact = math.comb(100, 50) / 2**101
    sd = math.sqrt(0.25 / 100 - exact**2)  # E[(k/100 - 1/2)^2] = 1/400
    mean, q95 = M.calibrated_ece_band(np.full(100, 0.5), draws=4000, seed=1)
    assert abs(mean - exact) < 4 * sd / math.sqrt(4000) and q95 > mean
    # a model whose edges come 0.2 more often than it says is outside the band of a small table
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.05, 0.6, 200)
    labels = rng.random(200) < probs + 0.2
    assert M.expected_calibration_error(probs, labels) > M.calibrated_ece_band(probs)[1]


def test_isotonic_fit_follows_a_different_monotone_truth_at_each_size_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(0)
    truth = {5: np.sqrt, 80: lambda p: p**3}  # under-confident on small graphs, over-confident on large ones
    n = 20_000  # per size

    def draw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = np.repeat([5, 80], n)
        p = rng.random(2 * n)
        rate = np.where(d == 5, truth[5](p), truth[80](p))
        return p, (rng.random(2 * n) < rate).astype(float), d

    cal = fit_isotonic(*draw())
    assert cal.sizes == (5, 80)
    for knots, values in zip(cal.knots, cal.values, strict=True):
        assert np.all(np.diff(knots) > 0) and np.all(np.diff(values) > 0)  # strictly rising: ranking kept
    p, labels, d = draw()  # held out
    out = cal.probabilities(p, d)
    for size, f in truth.items():
        mask = d == size
        # the isotonic estimate's error shrinks like n^(-1/3) (0.037 at n = 20,000); 0.05 allows its constant
        assert np.abs(out[mask] - f(p[mask])).mean() < 0.05
        assert M.expected_calibration_error(out[mask], labels[mask]) < M.expected_calibration_error(
            p[mask], labels[mask]
        )


def test_identity_calibration_changes_nothing_but_the_diagonal() -> None:
    p = np.array([[0.3, 0.8], [0.1, 0.6]])
    out = Calibration().probabilities(p)
    assert out[0, 1] == pytest.approx(0.8) and out[1, 0] == pytest.approx(0.1)
    assert out[0, 0] == 0.0 and out[1, 1] == 0.0


def test_pairs_beyond_the_end_knots_keep_their_order_and_their_calibration() -> None:
    cal = Calibration(sizes=(5, 50), knots=((0.2, 0.6), (0.1, 0.8)), values=((0.1, 0.7), (0.05, 0.9)))
    p = np.array([0.0, 0.01, 0.05, 0.15, 0.3, 0.7, 0.85, 0.95, 0.99, 1.0])
    for d in (5, 20, 50):
        out = cal.probabilities(p, np.full(p.shape, d))
        assert np.all(np.diff(out) > 0)  # strictly rising: no tie among the most and least confident pairs
        assert out.min() >= 0.0 and out.max() <= 1.0
    at_5 = cal.probabilities(p, np.full(p.shape, 5))
    assert at_5[p <= 0.2] == pytest.approx(0.1, abs=1e-3) and at_5[p >= 0.6] == pytest.approx(0.7, abs=1e-3)
    assert at_5[0] == pytest.approx(0.1 * (1 - TAIL)) and at_5[-1] == pytest.approx(0.7 + 0.3 * TAIL)


def test_graph_size_comes_from_the_matrix_mixes_neighbouring_sizes_in_log_d_and_is_clamped() -> None:
    cal = Calibration(sizes=(5, 50), knots=((0.0, 1.0), (0.0, 1.0)), values=((0.2, 0.2), (0.6, 0.6)))
    at_10 = cal.probabilities(np.full((10, 10), 0.3))
    share = np.log(10 / 5) / np.log(50 / 5)
    assert at_10[0, 1] == pytest.approx(0.2 + share * 0.4)
    assert np.diag(at_10).tolist() == [0.0] * 10
    assert cal.probabilities(np.full(4, 0.3), np.array([2, 5, 50, 99])).tolist() == pytest.approx([0.2, 0.2, 0.6, 0.6])


def test_calibration_is_stored_beside_the_checkpoint_and_only_applies_to_its_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "pfn.pt"
    ckpt.write_bytes(b"weights v1")
    assert read_calibration(ckpt) is None
    (tmp_path / "pfn.json").write_text(json.dumps({"model": "pfn_a"}))
    assert read_calibration(ckpt) is None
    cal = TableCalibration(
        Calibration((5, 100), ((0.1, 0.5, 0.9), (0.2, 0.7)), ((0.05, 0.4, 0.95), (0.1, 0.8))),
        Calibration((10,), ((0.0, 1.0),), ((0.1, 0.3),)),
    )
    write_calibration(ckpt, cal, {"prior_ece_after": 0.01})
    stored = json.loads((tmp_path / "pfn.json").read_text())
    assert stored["model"] == "pfn_a" and stored["calibration"]["prior_ece_after"] == 0.01
    assert read_calibration(ckpt) == cal
    ckpt.write_bytes(b"weights v2")  # retrained: the old calibration must not be applied
    assert read_calibration(ckpt) is None


@pytest.mark.parametrize("old", ["platt", "one map for both kinds"])
def test_a_calibration_from_an_earlier_version_is_ignored_with_the_fix(tmp_path: Path, caplog, old: str) -> None:
    ckpt = tmp_path / "pfn.pt"
    ckpt.write_bytes(b"weights")
    write_calibration(ckpt, TableCalibration(), {})
    stored = json.loads((tmp_path / "pfn.json").read_text())
    one_map = stored["calibration"].pop("observational")
    del stored["calibration"]["interventional"]
    if old == "platt":
        stored["calibration"].update(slope=[0.8, 0.0], intercept=[-0.5, 0.0], sizes=[5, 100])
    else:
        stored["calibration"].update(one_map)
    (tmp_path / "pfn.json").write_text(json.dumps(stored))
    assert read_calibration(ckpt) is None
    assert "older kind" in caplog.text and "scripts/calibrate_pfn.py" in caplog.text


def test_each_graph_of_a_batch_gets_the_maps_of_its_kind_at_its_own_size() -> None:
    prior = SeedPrior(num_obs=30, num_int_per_regime=5, intervention_values=[2.0], obs_only_share=0.5)
    batch = fixed_set(8, 8, 6, prior, seed=3)[0]
    batch.node_mask[0, 4:] = False  # the first graph has 4 real nodes
    interventional = batch.regime_mask.any(1)  # [B]
    assert interventional.any() and not interventional.all()
    flat = lambda value: Calibration((4, 6), ((0.0, 1.0),) * 2, ((value, value), (value + 0.1, value + 0.1)))  # noqa: E731
    cal = TableCalibration(observational=flat(0.2), interventional=flat(0.6))
    out = calibrated(torch.full((8, 6, 6), 0.5), batch, cal)
    for b, p in enumerate(out):
        d = 4 if b == 0 else 6
        expected = (0.6 if interventional[b] else 0.2) + (0.1 if d == 6 else 0.0)
        assert p.shape == (d, d) and p[0, 1] == pytest.approx(expected) and p[1, 1] == 0.0
    raw = calibrated(torch.full((8, 6, 6), 0.5), batch, None)
    assert raw[0].shape == (4, 4) and raw[0][0, 1] == 0.5


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


def test_calibrate_script_fits_both_kinds_and_draws_their_reliability(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ModelD(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=8)
    ckpt = tmp_path / "pfn.pt"
    torch.save({"net_spec": net.net_spec(), "state_dict": net.state_dict()}, ckpt)
    repo = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(repo / "scripts" / "calibrate_pfn.py"), "--checkpoint", str(ckpt), "--graphs", "8"]
    command += ["--sizes", "4", "6", "--override", "data.prior.num_obs=[40,80]", "--out", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    cal = read_calibration(ckpt)
    assert cal is not None and cal.observational.sizes == cal.interventional.sizes == (4, 6)
    assert cal.observational != cal.interventional  # fitted apart, on draws of each kind
    stored = json.loads((tmp_path / "pfn.json").read_text())["calibration"]
    assert set(stored["prior_ece_by_kind_and_size"]) == {"observational", "interventional"}
    assert (tmp_path / "out" / "reliability_prior.png").stat().st_size > 0


def test_a_few_confident_pairs_do_not_set_the_top_of_the_map() -> None:
    rng = np.random.default_rng(2)
    p = np.sort(rng.random(20_000))
    labels = (rng.random(20_000) < 0.5 * p).astype(float)  # the true edge rate is p / 2 everywhere ...
    labels[-30:] = 1.0  # ... but the 30 most confident pairs happen to be edges
    d = np.full(20_000, 10)
    loose = fit_isotonic(p, labels, d, min_pairs=1)
    pooled = fit_isotonic(p, labels, d)  # no value rests on fewer than 200 pairs
    assert loose.values[0][-1] == 1.0
    assert pooled.values[0][-1] < 0.75 and np.all(np.diff(pooled.values[0]) > 0)
    assert len(pooled.knots[0]) < len(loose.knots[0])
