"""Omitted-variable-bias sensitivity: DoubleML reproduces our bounds, robustness values and benchmarks."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from causal_engine.dml.scores import estimate
from causal_engine.dml.sensitivity import (
    RV_MAX,
    Benchmark,
    benchmark,
    benchmark_bounds,
    bounds,
    contour_grid,
    sensitivity_analysis,
    sensitivity_elements,
)
from causal_engine.errors import UserError

from .conftest import doubleml_with, linear_out_of_fold

N, K = 600, 3
COLUMNS = ["x1", "x2", "x3"]


@pytest.fixture(scope="module")
def table():
    """A confounded table; x3 drives treatment and outcome, so dropping it is a visible confounder."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 3))
    d = (rng.uniform(size=N) < 1 / (1 + np.exp(-(0.8 * x[:, 0] + 0.6 * x[:, 2])))).astype(float)
    y = 0.5 * d + x[:, 0] + 0.3 * x[:, 1] + 0.7 * x[:, 2] + d * x[:, 1] + rng.normal(size=N)
    folds = list(KFold(K, shuffle=True, random_state=0).split(x))
    long = linear_out_of_fold(x, d, y, folds)
    short = linear_out_of_fold(x[:, :2], d, y, folds)
    # Make the clipping bite, on rows whose arm keeps the weights moderate (a treated row at m = 0.01 would
    # drive the orthogonal ν² negative: that case has its own test).
    control, treated = np.flatnonzero(d == 0)[:2], np.flatnonzero(d == 1)[:2]
    long["m"][control], long["m"][treated] = 0.001, 0.999
    frame = pd.DataFrame(x, columns=COLUMNS).assign(y=y, d=d)
    return frame, folds, long, short


def _doubleml(score: str, frame: pd.DataFrame, folds: list, preds: dict, normalize: bool = False):
    """DoubleML with our predictions. It clips both tails; our ATT clips only the upper one, so for the ATT the
    cross-check starts from propensities whose lower tail is already at the trim (the same input for both)."""
    return doubleml_with(score, frame, folds, _att_input(score, preds), normalize)


def _att_input(score: str, preds: dict) -> dict:
    """For the ATT, propensities with the lower tail lifted to the trim (see `_doubleml`)."""
    return dict(preds, m=np.maximum(preds["m"], 0.01)) if score == "att" else preds


def _elements(score: str, frame: pd.DataFrame, preds: dict, normalize: bool = False):
    preds = _att_input(score, preds)
    return sensitivity_elements(score, frame["y"].to_numpy(), frame["d"].to_numpy(), preds, normalize=normalize)


CASES = [("ate", False), ("ate", True), ("att", False), ("plr", False)]


@pytest.mark.parametrize(("score", "normalize"), CASES)
@pytest.mark.parametrize(("cf_y", "cf_d", "rho", "null"), [(0.03, 0.03, 1.0, 0.0), (0.1, 0.05, -0.5, 0.8)])
def test_doubleml_sensitivity_analysis_reproduces_our_bounds(table, score, normalize, cf_y, cf_d, rho, null):
    frame, folds, long, _ = table
    model, _ = _doubleml(score, frame, folds, long, normalize)
    model.sensitivity_analysis(cf_y=cf_y, cf_d=cf_d, rho=rho, level=0.95, null_hypothesis=null)
    theirs = model.sensitivity_params
    reps = [_elements(score, frame, long, normalize)]
    ours = sensitivity_analysis(reps, cf_y=cf_y, cf_d=cf_d, rho=rho, level=0.95, null_hypothesis=null)
    assert ours.theta == pytest.approx(model.coef[0], rel=1e-10)
    got = [ours.theta_lower, ours.theta_upper, ours.ci_low, ours.ci_high]
    want = [
        theirs["theta"]["lower"][0],
        theirs["theta"]["upper"][0],
        theirs["ci"]["lower"][0],
        theirs["ci"]["upper"][0],
    ]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert not reps[0].nu2_fallback
    # DoubleML minimises the squared gap with scipy's bounded Brent (xatol = 1e-5); we root-find to 1e-12.
    np.testing.assert_allclose([ours.rv, ours.rva], [theirs["rv"][0], theirs["rva"][0]], atol=2e-5)
    assert 0.0 < ours.rva < ours.rv < 1.0 or ours.rva == 0.0


@pytest.mark.parametrize(("score", "normalize"), CASES)
def test_doubleml_sensitivity_benchmark_reproduces_our_gain_statistics(table, score, normalize):
    frame, folds, long, short = table
    model, _ = _doubleml(score, frame, folds, long, normalize)
    _, short_external = _doubleml(score, frame, folds, short, normalize)
    theirs = model.sensitivity_benchmark(["x3"], fit_args={"external_predictions": {"d": short_external}})
    ours = benchmark([_elements(score, frame, long, normalize)], [_elements(score, frame, short, normalize)])
    got = [ours.cf_y, ours.cf_d, ours.rho, ours.delta_theta]
    np.testing.assert_allclose(got, theirs[["cf_y", "cf_d", "rho", "delta_theta"]].to_numpy()[0], rtol=1e-9, atol=1e-12)
    assert ours.cf_y > 0.0 and ours.delta_theta > 0.0  # x3 confounds upwards: leaving it out inflates θ
    # DoubleML's workflow: the bounds at the benchmarked strengths and rho (|rho|: the bound is symmetric in its sign).
    # (A strength clipped to 1, as the att's cf_d here, is taken at RV_MAX: the bounds are infinite at 1.)
    cf_y, cf_d, rho = (min(theirs.iloc[0][k], RV_MAX) for k in ("cf_y", "cf_d", "rho"))
    model.sensitivity_analysis(cf_y=cf_y, cf_d=cf_d, rho=abs(rho), level=0.95)
    params = model.sensitivity_params
    want = [params[kind][end][0] for kind in ("theta", "ci") for end in ("lower", "upper")]
    got = benchmark_bounds([_elements(score, frame, long, normalize)], ours, rho=abs(ours.rho), level=0.95)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_benchmark_bounds_take_a_clipped_strength_as_the_largest_finite_one(table):
    frame, _, long, _ = table
    reps = [_elements("ate", frame, long)]
    clipped = Benchmark(cf_y=1.0, cf_d=0.2, rho=-0.5, delta_theta=-0.1)
    assert benchmark_bounds(reps, clipped) == bounds(reps, RV_MAX, 0.2, 1.0)
    assert benchmark_bounds(reps, clipped, rho=0.5) == bounds(reps, RV_MAX, 0.2, 0.5)


def test_a_negative_orthogonal_nu2_falls_back_to_the_riesz_representer_square(table):
    frame, folds, long, _ = table
    extreme = dict(long, m=long["m"].copy())
    extreme["m"][np.flatnonzero(frame["d"].to_numpy() == 1)[:2]] = 0.001  # weight 1/0.01 on two treated rows
    with pytest.warns(UserWarning, match="nu2"):
        model, _ = _doubleml("ate", frame, folds, extreme)
    model.sensitivity_analysis(cf_y=0.03, cf_d=0.03)
    reps = [_elements("ate", frame, extreme)]
    assert reps[0].nu2_fallback
    assert reps[0].nu2 == pytest.approx(np.mean(reps[0].riesz ** 2), rel=1e-12)
    ours = sensitivity_analysis(reps)
    theirs = model.sensitivity_params["theta"]
    np.testing.assert_allclose(
        [ours.theta_lower, ours.theta_upper], [theirs["lower"][0], theirs["upper"][0]], rtol=1e-10
    )
    # Only the confidence limits differ: DoubleML keeps E[α̂²]'s influence function uncentred (α̂², not
    # α̂² - ν̂²), which inflates their width; ours is centred like every other influence function.
    ci = model.sensitivity_params["ci"]
    assert ci["lower"][0] < ours.ci_low < ours.ci_high < ci["upper"][0]


@pytest.mark.parametrize("score", ["ate", "att", "plr"])
def test_bounds_without_confounding_collapse_to_the_estimate(table, score):
    frame, _, long, _ = table
    reps = [_elements(score, frame, long)]
    low, high, ci_low, ci_high = bounds(reps, 0.0, 0.0, 1.0, level=0.95)
    assert low == high == reps[0].theta
    # One-sided 95 % limits on each end = the estimate's two-sided 90 % interval.
    p = _att_input(score, long)  # the input `_elements` used
    point = estimate(score, frame["y"], frame["d"], g0=p["g0"], g1=p["g1"], m=p["m"], ell=p["ell"], level=0.9)
    assert point.estimate == pytest.approx(low, rel=1e-12)
    np.testing.assert_allclose([ci_low, ci_high], [point.ci_low, point.ci_high], rtol=1e-12)
    # rho = 0 removes the bias term whatever the strengths.
    assert bounds(reps, 0.5, 0.5, 0.0) == (low, high, ci_low, ci_high)


def test_bounds_widen_monotonically_and_the_contour_matches_them(table):
    frame, _, long, _ = table
    reps = [_elements("ate", frame, long)]
    grid = np.array([0.0, 0.05, 0.1, 0.2])
    lower = contour_grid(reps, grid, grid)  # [4, 4]
    assert lower.shape == (4, 4)
    assert np.all(np.diff(lower, axis=0)[:, 1:] < 0) and np.all(np.diff(lower, axis=1)[1:] < 0)
    assert lower[2, 1] == bounds(reps, 0.1, 0.05)[0]


def test_robustness_value_is_where_the_bound_reaches_the_null(table):
    frame, _, long, _ = table
    reps = [_elements("ate", frame, long)]
    result = sensitivity_analysis(reps, null_hypothesis=0.0)
    assert bounds(reps, result.rv, result.rv)[0] == pytest.approx(0.0, abs=1e-9)
    assert bounds(reps, result.rva, result.rva)[2] == pytest.approx(0.0, abs=1e-9)
    metrics = result.as_metrics()
    assert {
        "dml/sensitivity/theta_lower",
        "dml/sensitivity/ci_high",
        "dml/sensitivity/rv",
        "dml/sensitivity/rva",
    } <= set(metrics)


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"cf_y": 1.0}, "cf_y"), ({"cf_d": -0.1}, "cf_d"), ({"rho": 1.5}, "rho")]
)
def test_out_of_range_strengths_name_the_config_key(table, kwargs, field):
    frame, _, long, _ = table
    with pytest.raises(UserError, match=f"dml.sensitivity.{field}"):
        sensitivity_analysis([_elements("ate", frame, long)], **kwargs)


def test_contour_figure_marks_the_benchmark_and_saves(table, tmp_path):
    from causal_engine.plots import save_figure, sensitivity_contour_figure

    frame, _, long, short = table
    reps = [_elements("ate", frame, long)]
    point = benchmark(reps, [_elements("ate", frame, short)])
    grid = np.linspace(0.0, 0.5, 6)
    fig = sensitivity_contour_figure(
        grid, grid, contour_grid(reps, grid, grid), scenario=(0.03, 0.03), benchmarks={"x3": (point.cf_y, point.cf_d)}
    )
    assert "x3" in [text.get_text() for text in fig.axes[0].texts]
    assert save_figure(fig, tmp_path / "sensitivity.png").stat().st_size > 0
