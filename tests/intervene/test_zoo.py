"""The benchmark zoo: exact answers against Monte Carlo (tolerances from the MC standard error)."""

import math

import pytest
import torch

from causal_engine.intervene.zoo import ZOO, get_scm


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mc_do_mean(scm, v: float, n: int, seed: int) -> tuple[float, float]:
    draws = scm.sample(n, _gen(seed), {scm.treatment: v})[:, scm.outcome]
    return float(draws.mean()), float(draws.std() / n**0.5)


@pytest.mark.parametrize("v", [-1.0, -0.3, 0.4])
def test_nonlin_simpson_do_mean_is_tanh_2v_minus_1(v):
    scm = get_scm("nonlin_simpson")
    exact, se0 = scm.do_mean(torch.tensor([v], dtype=torch.float64))
    assert float(exact) == pytest.approx(math.tanh(2 * v) - 1, abs=1e-12) and se0 == 0
    mc, se = _mc_do_mean(scm, v, 100_000, seed=1)
    assert abs(mc - float(exact)) < 4 * se  # a 4-SE band: fails by chance with probability < 1e-4


@pytest.mark.parametrize("name", ["symprod_simpson", "mediator_linear", "large_backdoor_linear", "toy"])
def test_analytic_do_mean_matches_monte_carlo(name):
    scm = get_scm(name)
    exact, _ = scm.do_mean(torch.tensor([0.7]))
    mc, se = _mc_do_mean(scm, 0.7, 100_000, seed=2)
    assert abs(mc - float(exact)) < 4 * se


def test_linear_do_mean_equals_total_effect():
    scm = get_scm("mediator_linear")  # x0 -> x1 (1.0), x0 -> x2 (0.5), x1 -> x2 (1.0): total 1.5
    means, _ = scm.do_mean(torch.tensor([0.0, 1.0, 2.0]))
    assert torch.allclose(means, torch.tensor([0.0, 1.5, 3.0], dtype=torch.float64))


def test_monte_carlo_do_mean_reports_its_standard_error():
    scm = get_scm("chain3_nonlin")
    means, ses = scm.do_mean(torch.tensor([0.5]), n_mc=100_000, seed=3)
    other, _ = scm.do_mean(torch.tensor([0.5]), n_mc=100_000, seed=4)
    assert 0 < float(ses) < 0.01
    assert abs(float(means - other)) < 4 * 2**0.5 * float(ses)
    with pytest.raises(ValueError, match="n_mc"):
        scm.do_mean(torch.tensor([0.5]), n_mc=1000)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_abduction_inverts_simulation_and_null_counterfactual_is_factual(name):
    scm = get_scm(name)
    noise = scm.sample_noise(256, _gen(5))
    x = scm.simulate(noise)
    assert torch.allclose(scm.abduct(x), noise, atol=1e-6)
    assert torch.allclose(scm.counterfactual(x, {}), x, atol=1e-9)


def test_nonlin_simpson_counterfactual_matches_the_closed_form():
    scm = get_scm("nonlin_simpson")
    x = scm.sample(512, _gen(6))
    cf = scm.counterfactual(x, {"x1": {"shift": 1.0}})
    x1, x2 = x[:, 1], x[:, 2]
    expected_x2 = x2 + torch.tanh(2 * (x1 + 1)) - torch.tanh(2 * x1)
    assert torch.allclose(cf[:, 2], expected_x2, atol=1e-9)
    assert torch.equal(cf[:, 0], x[:, 0])
    laplace = x[:, 3] - 5 * torch.tanh((x2 - 4) / 5) - 3  # x3 keeps its Laplace noise
    assert torch.allclose(cf[:, 3], 5 * torch.tanh((expected_x2 - 4) / 5) + 3 + laplace, atol=1e-9)


def test_interventions_in_the_zoo_cut_only_incoming_edges():
    scm = get_scm("mediator_nonlin")
    noise = scm.sample_noise(128, _gen(7))
    a = scm.simulate(noise, {"x1": 0.3})
    noise_b = noise.clone()
    noise_b[:, 0] += 1.0  # move x1's parent x0
    b = scm.simulate(noise_b, {"x1": 0.3})
    assert torch.all(a[:, 1] == 0.3) and torch.all(b[:, 1] == 0.3)
    assert not torch.allclose(a[:, 2], b[:, 2])  # x2 still hears x0 directly


def test_unknown_scm_lists_the_zoo():
    with pytest.raises(ValueError, match="nonlin_simpson"):
        get_scm("nope")
