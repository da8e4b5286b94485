"""The orthogonal scores against hand computations, and a linear DGP whose CI must cover the truth."""

import numpy as np
import pytest

from causal_engine.dml.folds import stratified_folds
from causal_engine.dml.scores import ScoreElements, aggregate, clip_propensity, estimate, hajek_propensity

Y = np.array([1.0, 2.0, 3.0, 4.0])
D = np.array([1.0, 0.0, 1.0, 0.0])
G0 = np.array([0.5, 1.5, 2.0, 3.0])
G1 = np.array([1.5, 2.5, 3.0, 4.5])
M = np.array([0.5, 0.5, 0.25, 0.75])


def test_ate_score_matches_hand_computation():
    # psi_b = g1 - g0 + d(y-g1)/m - (1-d)(y-g0)/(1-m) = [0, 0, 1, -2.5]; theta = mean = -0.375
    r = estimate("ate", Y, D, g0=G0, g1=G1, m=M, trim=0.0)
    assert r.estimate == pytest.approx(-0.375)
    psi = np.array([0.375, 0.375, 1.375, -2.125])
    assert r.se == pytest.approx(np.sqrt(np.mean(psi**2) / 4))
    assert r.ci_low == pytest.approx(-0.375 - 1.959963984540054 * r.se)
    assert r.ci_high == pytest.approx(-0.375 + 1.959963984540054 * r.se)
    assert r.n == 4 and r.clipped_share == 0.0


def test_att_score_matches_hand_computation():
    # p = 0.5; psi_b = [1, -1, 2, -6]; psi_a = -d/p = [-2, 0, -2, 0]; theta = -mean(psi_b)/mean(psi_a) = -1
    r = estimate("att", Y, D, g0=G0, m=M, trim=0.0)
    assert r.estimate == pytest.approx(-1.0)
    # psi = psi_a * theta + psi_b = [3, -1, 4, -6]; J = -1
    assert r.se == pytest.approx(np.sqrt(15.5 / 4))


def test_plr_score_is_the_residual_on_residual_slope():
    ell = np.array([1.5, 1.5, 2.5, 3.5])
    r = estimate("plr", Y, D, g0=G0, m=M, ell=ell)
    v, u = D - M, Y - ell
    theta = np.sum(v * u) / np.sum(v**2)
    assert r.estimate == pytest.approx(theta)
    psi = (u - theta * v) * v
    assert r.se == pytest.approx(np.sqrt(np.mean(psi**2) / np.mean(v**2) ** 2 / 4))


def test_clipping_truncates_and_reports_the_share():
    clipped, share = clip_propensity(np.array([0.001, 0.5, 0.999, 0.2]), 0.01)
    np.testing.assert_allclose(clipped, [0.01, 0.5, 0.99, 0.2])
    assert share == 0.5
    r = estimate("ate", Y, D, g0=G0, g1=G1, m=np.array([0.001, 0.5, 0.25, 0.75]), trim=0.01)
    assert r.clipped_share == 0.25 and r.propensity_min == 0.001


def test_hajek_weights_average_to_one_per_arm():
    m = hajek_propensity(M, D)
    assert np.mean(D / m) == pytest.approx(1.0)
    assert np.mean((1 - D) / (1 - m)) == pytest.approx(1.0)


def test_repetitions_aggregate_by_median_with_between_split_spread():
    def rep(theta):  # psi_a = -1, psi_b = theta + [1, -1]: estimate theta, se = sqrt(1/2)
        return ScoreElements(-np.ones(2), theta + np.array([1.0, -1.0]), 0.0, 0.2, 0.8)

    r = aggregate("ate", [rep(0.0), rep(1.0), rep(3.0)])
    assert r.estimate == 1.0
    # median over reps of se_r^2 + (theta_r - 1)^2 = median(0.5 + [1, 0, 4]) = 1.5
    assert r.se == pytest.approx(np.sqrt(1.5))
    assert r.rep_estimates == (0.0, 1.0, 3.0)


def test_bad_score_and_trim_are_rejected():
    with pytest.raises(ValueError, match="dml.score"):
        estimate("atx", Y, D, g0=G0, g1=G1, m=M)
    with pytest.raises(ValueError, match="dml.trim"):
        estimate("ate", Y, D, g0=G0, g1=G1, m=M, trim=0.6)


def _linear_dgp(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    m = 1 / (1 + np.exp(-(1.0 * x[:, 0] - 0.8 * x[:, 1])))
    d = (rng.uniform(size=n) < m).astype(float)
    y = 2.0 * x[:, 0] + 1.5 * x[:, 1] + 0.5 * x[:, 2] + 1.0 * d + rng.normal(size=n)
    return x, d, y


def _ols(xtr, ytr, xte):
    a = np.c_[np.ones(len(xtr)), xtr]
    coef = np.linalg.lstsq(a, ytr, rcond=None)[0]
    return np.c_[np.ones(len(xte)), xte] @ coef


def _logit(xtr, dtr, xte, steps=200):
    a, b = np.c_[np.ones(len(xtr)), xtr], np.c_[np.ones(len(xte)), xte]
    w = np.zeros(a.shape[1])
    for _ in range(steps):  # Newton's method
        p = 1 / (1 + np.exp(-a @ w))
        w += np.linalg.solve(a.T @ (a * (p * (1 - p))[:, None]), a.T @ (dtr - p))
    return 1 / (1 + np.exp(-b @ w))


@pytest.mark.parametrize("score", ["ate", "att", "plr"])
def test_crossfit_linear_dgp_ci_covers_true_effect(score):
    x, d, y = _linear_dgp(2000, seed=0)
    g0, g1, m, ell = (np.empty(len(y)) for _ in range(4))
    for fold in stratified_folds(d, 5, seed=1)[0]:
        tr, te = fold.train, fold.test
        g0[te] = _ols(x[tr][d[tr] == 0], y[tr][d[tr] == 0], x[te])
        g1[te] = _ols(x[tr][d[tr] == 1], y[tr][d[tr] == 1], x[te])
        m[te] = _logit(x[tr], d[tr], x[te])
        ell[te] = _ols(x[tr], y[tr], x[te])
    r = estimate(score, y, d, g0=g0, g1=g1, m=m, ell=ell)
    assert r.ci_low < 1.0 < r.ci_high
    assert abs(r.estimate - 1.0) < 3 * r.se
    naive = y[d == 1].mean() - y[d == 0].mean()
    assert abs(naive - 1.0) > 10 * r.se  # the confounding is real, so covering 1.0 is not for free


def test_folds_are_stratified_disjoint_and_cover_every_row():
    d = np.r_[np.ones(23), np.zeros(77)]
    plan = stratified_folds(d, 5, n_rep=2, seed=3)
    for rep in plan:
        tests = np.concatenate([f.test for f in rep])
        np.testing.assert_array_equal(np.sort(tests), np.arange(100))
        for f in rep:
            assert np.intersect1d(f.train, f.test).size == 0
            assert len(f.train) + len(f.test) == 100
            assert d[f.test].sum() in (4, 5)
    assert not np.array_equal(plan[0][0].test, plan[1][0].test)
    np.testing.assert_array_equal(stratified_folds(d, 5, seed=3)[0][2].test, plan[0][2].test)
