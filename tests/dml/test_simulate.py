"""The confounded video simulator: confounding strong enough to bias the naive contrast, U visible in the frames."""

import numpy as np
import pytest

from causal_engine.dml.simulate import simulate_videos, treatment_logit
from causal_engine.dml.video import VideoConfoundedDataModule


def test_simulator_naive_difference_is_biased_by_at_least_half():
    s = simulate_videos(4000, seed=0)
    d, y = s.treatment, s.outcome
    naive = y[d == 1].mean() - y[d == 0].mean()
    se = np.sqrt(y[d == 1].var() / (d == 1).sum() + y[d == 0].var() / (d == 0).sum())
    assert naive - s.true_ate >= 0.5 + 3 * se
    assert s.videos.shape == (4000, 1, 8, 16, 16) and s.confounders.shape == (4000, 6)
    assert s.propensity.min() > 0.01 and s.propensity.max() < 0.99  # overlap at the default


def _centroid_r2(**kwargs) -> np.ndarray:
    """Held-out R² of the object's start x, y and velocity from per-frame intensity centroids (least squares)."""
    s = simulate_videos(2000, seed=3, **kwargs)
    v = np.clip(s.videos.numpy()[:, 0], 0, None)  # [N, T, H, W] the bright object; the distractor is dark
    yy, xx = np.meshgrid(np.arange(v.shape[2]), np.arange(v.shape[3]), indexing="ij")
    mass = v.sum((2, 3))  # [N, T]
    x = np.c_[(v * xx).sum((2, 3)) / mass, (v * yy).sum((2, 3)) / mass, np.ones(len(v))]  # [N, 2T + 1]
    u = s.confounders[:, :4]  # x0, y0, vx, vy
    coef = np.linalg.lstsq(x[:1500], u[:1500], rcond=None)[0]
    resid = u[1500:] - x[1500:] @ coef
    return 1 - (resid**2).sum(0) / ((u[1500:] - u[1500:].mean(0)) ** 2).sum(0)


def test_simulator_shows_the_confounders_and_its_nuisances_do_not_hide_them():
    # Identification needs the video to determine U: plain centroids already read position and motion.
    clean = _centroid_r2(pixel_noise=0.0, texture_contrast=0.0)
    default = _centroid_r2()
    assert clean.min() > 0.985 and default.min() > 0.98
    # The noise knobs are what blurs U (the residual confounding DML leaves grows with them).
    assert _centroid_r2(pixel_noise=0.1, texture_contrast=0.1).mean() < default.mean() - 0.02


def test_simulator_heterogeneous_effects_average_to_the_stated_ate():
    s = simulate_videos(20000, dims=(1, 2, 4, 4), heterogeneous=True, ate=1.0, seed=1)
    assert s.tau.std() > 0.2
    # population ATE is exact (u_size uniform on [-1, 1]); the sample mean is within 4 of its SEs
    assert abs(s.tau.mean() - 1.0) < 4 * s.tau.std() / np.sqrt(len(s.tau))
    randomised = simulate_videos(50, dims=(3, 2, 4, 4), treatment_strength=0.0, seed=1)
    np.testing.assert_allclose(randomised.propensity, 0.5)
    assert randomised.videos.shape == (50, 3, 2, 4, 4)


def test_the_data_module_passes_the_simulations_keywords_on_and_keeps_the_loaders():
    module = VideoConfoundedDataModule(n_samples=30, dims=[1, 2, 4, 4], ate=2.0, seed=4, batch_size=8, split_seed=1)
    expected = simulate_videos(30, dims=(1, 2, 4, 4), ate=2.0, seed=4)
    sample = module.sample()
    np.testing.assert_array_equal(sample.features, expected.videos)
    np.testing.assert_array_equal(sample.outcome, expected.outcome)
    assert sample.true_ate == expected.true_ate == 2.0
    assert (module.batch_size, module.split_seed) == (8, 1)
    with pytest.raises(TypeError, match="n_sample"):
        VideoConfoundedDataModule(n_sample=30)


def test_hidden_confounder_moves_treatment_and_outcome_but_not_a_pixel():
    plain = simulate_videos(400, dims=(1, 2, 4, 4), seed=3)
    hidden = simulate_videos(400, dims=(1, 2, 4, 4), hidden_confounder_strength=1.0, treatment_strength=0.7, seed=3)
    plain_s = simulate_videos(400, dims=(1, 2, 4, 4), treatment_strength=0.7, seed=3)
    # Not rendered, and drawn from its own stream: frames and visible confounders are those of the same seed.
    assert np.array_equal(hidden.videos.numpy(), plain.videos.numpy())
    assert np.array_equal(hidden.confounders, plain.confounders) and np.array_equal(hidden.hidden, plain.hidden)
    # It enters the treatment logit with coefficient 1 (times the overlap knob) ...
    logit = np.log(hidden.propensity / (1 - hidden.propensity))
    np.testing.assert_allclose(logit, 0.7 * (treatment_logit(hidden.confounders) + hidden.hidden), atol=1e-9)
    # ... and the baseline outcome with coefficient 1: same noise, so the difference is exact.
    np.testing.assert_allclose(
        hidden.outcome - plain_s.outcome,
        hidden.hidden + hidden.tau * (hidden.treatment - plain_s.treatment),
        atol=1e-12,
    )


def test_default_draw_is_unchanged_by_the_hidden_confounder_option():
    # Values drawn before the option existed: the benchmark's seeds keep their data.
    s = simulate_videos(6, dims=(1, 2, 4, 4), seed=5)
    np.testing.assert_allclose(
        s.outcome,
        [
            0.8399709742148379,
            -1.7685325922744557,
            -1.862100852329713,
            0.7192309156997021,
            1.5097148735872639,
            0.8388076376265257,
        ],
        rtol=1e-13,
    )
    np.testing.assert_array_equal(s.treatment, [0, 0, 0, 1, 1, 0])
    assert float(s.videos.sum()) == 10.117514610290527
