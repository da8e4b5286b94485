"""Cross-check: DoubleML, given our out-of-fold predictions and fold plan, reproduces our estimate, SE and CI."""

import numpy as np
import pandas as pd
import pytest
from doubleml import DoubleMLData, DoubleMLIRM, DoubleMLPLR
from sklearn.linear_model import LinearRegression, LogisticRegression

from causal_engine.dml.crossfit import run_crossfit
from causal_engine.dml.scores import estimate
from causal_engine.train import compose

from .conftest import table_overrides


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A confounded table of 300 rows."""
    root = tmp_path_factory.mktemp("dml_xcheck")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    d = (rng.uniform(size=300) < 1 / (1 + np.exp(-1.5 * x[:, 0]))).astype(float)
    y = x[:, 0] + 0.5 * x[:, 1] ** 2 + d + rng.normal(size=300)
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "t": d, "y": y}).to_csv(root / "obs.csv", index=False)
    return root


@pytest.fixture(scope="module")
def crossfitted(table):
    """One real cross-fitted run on the table (random forests by dml.learner=auto, K = 3)."""
    return run_crossfit(compose(table_overrides(table / "obs.csv"), table / "run"))


@pytest.fixture(scope="module")
def crossfitted_plr(table):
    """The same with the PLR score (E[Y|X] and E[D|X] fitted directly)."""
    return run_crossfit(compose([*table_overrides(table / "obs.csv"), "dml.score=plr"], table / "run_plr"))


def _dml_data(out):
    s = out.sample
    frame = pd.DataFrame(s.features.numpy().astype(float), columns=list(s.feature_names))
    frame["y"], frame["t"] = s.outcome, s.treatment
    return DoubleMLData(frame, y_col="y", d_cols="t", x_cols=list(s.feature_names))


def _assert_same(ours, theirs):
    np.testing.assert_allclose(ours.estimate, theirs.coef[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.se, theirs.se[0], rtol=1e-9, atol=1e-12)
    ci = theirs.confint(level=0.95).to_numpy()[0]
    np.testing.assert_allclose([ours.ci_low, ours.ci_high], ci, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("score", "normalize"), [("ate", False), ("ate", True), ("att", False)])
def test_doubleml_irm_reproduces_our_aipw_inference(crossfitted, score, normalize):
    out = crossfitted
    p = out.predictions[0]
    # Make the check bite on clipping too: push a few propensities into the tails the score clips (ate: both;
    # att: the upper one only, so its lower tail is left where DoubleML, which clips both, agrees).
    m = np.clip(p["m"], 0.02, 0.98)
    m[3:5] = 0.999
    if score == "ate":
        m[:3] = 0.001
    ours = estimate(
        score, out.sample.outcome, out.sample.treatment, g0=p["g0"], g1=p["g1"], m=m, trim=0.01, normalize=normalize
    )
    assert ours.clipped_share == pytest.approx((5 if score == "ate" else 2) / 300)
    irm = DoubleMLIRM(
        _dml_data(out),
        ml_g=LinearRegression(),
        ml_m=LogisticRegression(),
        n_folds=3,
        score={"ate": "ATE", "att": "ATTE"}[score],
        normalize_ipw=normalize,
        draw_sample_splitting=False,
    )
    irm.set_sample_splitting([(f.train, f.test) for f in out.plan[0]])
    irm.fit(external_predictions={"t": {"ml_g0": p["g0"][:, None], "ml_g1": p["g1"][:, None], "ml_m": m[:, None]}})
    _assert_same(ours, irm)


def test_doubleml_plr_reproduces_our_partialling_out_inference(crossfitted_plr):
    out = crossfitted_plr
    p = out.predictions[0]
    ours = estimate("plr", out.sample.outcome, out.sample.treatment, m=p["m"], ell=p["ell"])
    assert ours.estimate == out.result.estimate
    plr = DoubleMLPLR(
        _dml_data(out),
        ml_l=LinearRegression(),
        ml_m=LinearRegression(),
        n_folds=3,
        score="partialling out",
        draw_sample_splitting=False,
    )
    plr.set_sample_splitting([(f.train, f.test) for f in out.plan[0]])
    plr.fit(external_predictions={"t": {"ml_l": p["ell"][:, None], "ml_m": p["m"][:, None]}})
    _assert_same(ours, plr)


def test_crossfit_result_matches_its_own_predictions(crossfitted):
    out = crossfitted
    p = out.predictions[0]
    again = estimate("ate", out.sample.outcome, out.sample.treatment, g0=p["g0"], g1=p["g1"], m=p["m"])
    assert again.estimate == out.result.estimate and again.se == out.result.se
