"""Overlap checks that match the score: which tails each score clips and counts, reported for every score, and a
hopeless run stopped after its first fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from causal_engine.dml import crossfit
from causal_engine.dml.crossfit import run_crossfit, summarize
from causal_engine.dml.scores import clip_propensity, clipped_share, estimate
from causal_engine.errors import UserError

from .conftest import table_overrides

M = np.array([0.001, 0.5, 0.999, 0.2])


def test_ate_clips_and_counts_both_tails():
    clipped, share = clip_propensity(M, 0.01, (True, True))
    np.testing.assert_allclose(clipped, [0.01, 0.5, 0.99, 0.2])
    assert share == 0.5 and clipped_share("ate", M, 0.01) == 0.5


def test_att_clips_and_counts_only_the_upper_tail():
    clipped, share = clip_propensity(M, 0.01, (False, True))
    np.testing.assert_allclose(clipped, [0.001, 0.5, 0.99, 0.2])
    assert share == 0.25 and clipped_share("att", M, 0.01) == 0.25


def test_plr_never_clips_but_reports_both_tails():
    assert clipped_share("plr", M, 0.01) == 0.0
    r = estimate("plr", np.array([1.0, 2, 3, 4]), np.array([0.0, 1, 1, 0]), m=M, ell=np.zeros(4))
    assert (r.clipped_share, r.share_below, r.share_above) == (0.0, 0.25, 0.25)
    assert r.as_metrics()["dml/share_below_trim"] == 0.25


def test_att_leaves_a_control_with_propensity_near_zero_at_its_near_zero_weight():
    # Hand case: 2 treated, 2 controls; the ATT score weighs controls by m/(1-m). Lifting m = 1e-4 to 0.01 would
    # multiply that control's weight by about 100; the ATT uses it as estimated.
    y, d = np.array([3.0, 5.0, 1.0, 10.0]), np.array([1.0, 1.0, 0.0, 0.0])
    g0, m = np.array([1.0, 2.0, 1.5, 2.0]), np.array([0.6, 0.7, 0.5, 1e-4])
    p = 0.5
    psi_b = d * (y - g0) / p - m * (1 - d) * (y - g0) / (p * (1 - m))
    r = estimate("att", y, d, g0=g0, g1=g0, m=m, trim=0.01)
    assert r.estimate == pytest.approx(np.mean(psi_b) / np.mean(d / p), rel=1e-12)
    assert (r.clipped_share, r.share_below) == (0.0, 0.25)


@pytest.mark.parametrize(
    ("m", "names_att"),
    [
        (np.r_[np.full(30, 0.001), np.full(70, 0.5)], True),  # rows only controls occupy: the ATT still answers
        (np.r_[np.full(30, 0.999), np.full(70, 0.5)], False),  # treated rows without controls: the ATT cannot
    ],
)
def test_the_ate_refusal_says_which_tail_and_offers_the_att_only_where_it_answers(m, names_att):
    dml = OmegaConf.create({"score": "ate", "trim": 0.01, "max_clipped_share": 0.1})
    with pytest.raises(UserError, match=r"no overlap: 30.0% .* \((0|30).0% below, .*; (30|0).0% above") as caught:
        crossfit.check_overlap(dml, m, final=True)
    assert ("dml.score=att" in str(caught.value)) == names_att


def _one_sided(path: Path, n: int = 1500, seed: int = 0) -> Path:
    """About 8 % treated; most controls look nothing like them (e(x) near 0), none look treated."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-(3.0 * x[:, 0] - 6.0)))).astype(float)
    y = x[:, 0] + 0.5 * x[:, 1] + 1.0 * d + rng.normal(scale=0.5, size=n)
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "t": d, "y": y}).to_csv(path, index=False)
    return path


def test_att_runs_where_the_ate_refuses_for_controls_unlike_the_treated(compose, tmp_path):
    path = _one_sided(tmp_path / "obs.csv")
    with pytest.raises(UserError, match=r"no overlap: .* outside \[0.01, 0.99\]"):
        run_crossfit(compose([*table_overrides(path), "dml.score=ate"]))
    # The same run directory: the folds the ATE saw are reused (the score is an inference setting).
    out = run_crossfit(compose([*table_overrides(path), "dml.score=att"]))
    metrics = summarize(out)
    assert metrics["dml/share_below_trim"] > 0.5  # most controls: e(x) < 0.01, neither clipped nor counted
    assert metrics["dml/clipped_share"] == metrics["dml/share_above_trim"] <= 0.1


def test_hopeless_overlap_stops_after_the_first_fold(compose, tmp_path, monkeypatch):
    # The treatment is a deterministic function of x1: the propensities are (nearly) all 0 or 1.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2))
    d = (x[:, 0] > 0).astype(float)
    path = tmp_path / "obs.csv"
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "t": d, "y": x[:, 0] + d}).to_csv(path, index=False)
    fitted = []
    fit_fold = crossfit.fit_fold
    monkeypatch.setattr(crossfit, "fit_fold", lambda *a, **k: fitted.append(a[2].k) or fit_fold(*a, **k))
    with pytest.raises(UserError, match=r"after 200 held-out rows.*dml.max_clipped_share=0.1 \(with dml.trim=0.01\)"):
        run_crossfit(compose(table_overrides(path)))
    assert fitted == [0]
