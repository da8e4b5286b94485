"""Nuisance learners: `dml.learner=auto` resolves by data, library learners run through the same fold loop, the
leak check reads the rows each fit received, the networks report convergence, and PLR takes a continuous
treatment."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from causal_engine.dml.crossfit import ols_slope, run_crossfit, summarize
from causal_engine.dml.data import CausalSample, load_sample
from causal_engine.dml.fold import fit_fold
from causal_engine.dml.folds import Fold, stratified_folds
from causal_engine.dml.learners import resolve_learner

from .conftest import table_overrides


def _table(path: Path, n: int = 600, seed: int = 0, continuous: bool = False) -> Path:
    """Columns x1, x2 (confounders), t (binary, or continuous), y = x1 + 0.5 x2 + 1.0 t + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    if continuous:
        d = 0.8 * x[:, 0] + rng.normal(size=n)
    else:
        d = (rng.uniform(size=n) < 1 / (1 + np.exp(-x[:, 0]))).astype(float)
    y = x[:, 0] + 0.5 * x[:, 1] + 1.0 * d + rng.normal(scale=0.5, size=n)
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "t": d, "y": y}).to_csv(path, index=False)
    return path


def test_auto_picks_trees_for_a_table_and_networks_for_videos(compose, tmp_path, caplog):
    table = CausalSample(torch.zeros(4, 2), np.array([0.0, 1, 0, 1]), np.zeros(4))
    videos = CausalSample(torch.zeros(4, 1, 2, 4, 4), np.array([0.0, 1, 0, 1]), np.zeros(4))
    assert resolve_learner("auto", table) == "tabular"
    assert resolve_learner("auto", videos) == "network"
    assert resolve_learner("network", table) == "network" and resolve_learner("tabular", videos) == "tabular"
    path = _table(tmp_path / "obs.csv", n=90)
    with caplog.at_level(logging.INFO, logger="causal_engine.dml.crossfit"):
        out = run_crossfit(compose(table_overrides(path)))
    said = [r.getMessage() for r in caplog.records if "dml.learner=" in r.getMessage()]
    assert said == [
        "dml.learner=auto → tabular learners (outcome: StackingRegressor, propensity: StackingClassifier; "
        "choose with dml/tabular=forest|hist_gb|lasso|lightgbm|stack) for a covariate table"
    ]
    assert out.records[0].convergence == {}  # library learners have no epochs


@pytest.mark.parametrize("preset", ["forest", "hist_gb", "lasso", "lightgbm", "stack"])
def test_tabular_learners_run_the_fold_loop_without_leaks_and_cover_the_effect(compose, tmp_path, preset):
    path = _table(tmp_path / "obs.csv")
    out = run_crossfit(compose([*table_overrides(path, small_stack=False), f"dml/tabular={preset}"]))
    for rec in out.records:
        assert set(rec.trained_rows) == {"outcome", "propensity"}
        for rows in rec.trained_rows.values():
            np.testing.assert_array_equal(rows, rec.fold.train)  # every training row, no held-out one
    r = out.result
    # Within 3 reported SEs of the truth 1.0, where the naive difference is 0.83 off (confounded).
    assert abs(r.estimate - 1.0) < 3 * r.se, r
    assert abs(out.naive - 1.0) > 0.8


def test_a_fit_handed_held_out_rows_makes_the_fold_refuse(compose, tmp_path):
    # A fold step that gives the library learners every row (its held-out rows too): the rows each fit() received
    # are read back from the frames the estimators got, so the run refuses before any prediction is used.
    cfg = compose(table_overrides(_table(tmp_path / "obs.csv", n=120)))
    sample = load_sample(cfg.data)
    fold = stratified_folds(sample.treatment, 3, seed=0)[0][1]
    peeking = Fold(fold.rep, fold.k, train=np.arange(len(sample)), test=fold.test)
    with pytest.raises(RuntimeError, match=rf"rep0/fold1: the outcome model saw {len(fold.test)} held-out row"):
        fit_fold(cfg, sample, peeking, seed=1)


def test_a_network_that_cannot_converge_in_its_ceiling_warns_and_reports_it(compose, tmp_path, caplog):
    path = _table(tmp_path / "obs.csv", n=300)
    overrides = ["dml.learner=network", "dml.convergence.patience=1", "dml.convergence.max_epochs=2"]
    with caplog.at_level(logging.WARNING, logger="causal_engine.dml.fold"):
        out = run_crossfit(compose([*table_overrides(path), *overrides]))
    metrics = summarize(out)
    for k in range(3):
        for name in ("outcome", "propensity"):
            assert metrics[f"dml/fold{k}/{name}/epochs"] == 2.0
            assert metrics[f"dml/fold{k}/{name}/best_val_loss"] > 0
    # Two epochs from scratch: the held-out loss still falls at the ceiling, so the fit has not converged.
    assert metrics["dml/fold0/outcome/converged"] == 0.0 and metrics["dml/converged"] == 0.0
    warnings = [r.getMessage() for r in caplog.records if "did not converge" in r.getMessage()]
    assert warnings and "Raise dml.convergence.max_epochs (now 2)" in warnings[0]


def test_folds_of_a_continuous_treatment_cover_every_row_once():
    d = np.random.default_rng(0).normal(size=103)
    plan = stratified_folds(d, 4, n_rep=2, seed=3)
    for rep in plan:
        tests = np.concatenate([f.test for f in rep])
        np.testing.assert_array_equal(np.sort(tests), np.arange(103))
        assert sorted(len(f.test) for f in rep) == [25, 26, 26, 26]


def test_continuous_plr_is_the_hand_computed_partialling_out_estimate(compose, tmp_path):
    path = _table(tmp_path / "obs.csv", continuous=True)
    cfg = compose([*table_overrides(path), "dml.score=plr"])
    linear = {"outcome": {"_target_": "sklearn.linear_model.LinearRegression"}}
    with open_dict(cfg):
        cfg.dml.tabular = OmegaConf.create({**linear, "propensity": linear["outcome"]})
    out = run_crossfit(cfg)

    frame = pd.read_csv(path)
    x, d, y = frame[["x1", "x2"]].to_numpy(), frame.t.to_numpy(), frame.y.to_numpy()
    v, u = np.empty(len(d)), np.empty(len(d))  # out-of-fold residuals of D and Y on X (OLS with intercept)
    for fold in stratified_folds(d, 3, seed=cfg.dml.split_seed)[0]:
        design = np.c_[np.ones(len(x)), x]  # [N, 3]
        for target, resid in ((d, v), (y, u)):
            beta = np.linalg.lstsq(design[fold.train], target[fold.train], rcond=None)[0]
            resid[fold.test] = target[fold.test] - design[fold.test] @ beta
    theta = np.sum(v * u) / np.sum(v * v)
    psi = v * (u - theta * v)
    se = np.sqrt(np.mean(psi**2) / np.mean(v * v) ** 2 / len(d))
    assert out.result.estimate == pytest.approx(theta, rel=1e-9)
    assert out.result.se == pytest.approx(se, rel=1e-9)
    assert abs(theta - 1.0) < 3 * se
    assert out.naive == pytest.approx(np.polyfit(d, y, 1)[0], rel=1e-9)  # the naive estimate: an OLS slope
    metrics = summarize(out)
    assert "dml/share_below_trim" not in metrics and "dml/fold0/treatment_mse" in metrics


def test_naive_ols_slope_of_a_binary_treatment_is_the_difference_in_means_with_the_welch_se():
    rng = np.random.default_rng(1)
    d = (rng.uniform(size=50) < 0.3).astype(float)
    y = rng.normal(size=50) + 2 * d
    slope, se = ols_slope(d, y)
    y1, y0 = y[d == 1], y[d == 0]
    assert slope == pytest.approx(y1.mean() - y0.mean(), rel=1e-12)
    assert se == pytest.approx(np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0)), rel=1e-12)


def test_ate_and_att_still_refuse_a_continuous_treatment(compose, tmp_path):
    from causal_engine.errors import UserError

    path = _table(tmp_path / "obs.csv", n=60, continuous=True)
    with pytest.raises(UserError, match="dml.score=att needs a binary 0/1 treatment.*dml.score=plr"):
        run_crossfit(compose([*table_overrides(path), "dml.score=att"]))
