"""Interventional metrics (pure functions) and model.do sampling."""

import pytest
import torch

from causal_engine.intervene.models import StructuralMLP
from causal_engine.metrics import do_response_errors, mmd_rbf, rmse


def test_do_response_errors_exact_values():
    true = torch.tensor([0.0, 1.0, 2.0])
    pred = torch.tensor([0.0, 1.0, 3.0])
    errors = do_response_errors(pred, true)
    assert errors["rmse"] == pytest.approx((1 / 3) ** 0.5)
    assert errors["rel_rmse"] == pytest.approx((1 / 3) ** 0.5 / 1.0)  # SD of [0, 1, 2] is 1
    assert errors["ate_error"] == pytest.approx(1.0)
    assert torch.isinf(do_response_errors(true, torch.zeros(3))["rel_rmse"])  # flat truth
    assert rmse(true, true) == 0


def test_mmd_separates_shifted_samples_and_not_equal_ones():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 1, generator=gen), torch.randn(400, 1, generator=gen)
    same = float(mmd_rbf(a, b))
    shifted = float(mmd_rbf(a, b + 2.0))
    # Under the null the unbiased MMD² has mean 0 and SD of order 1/n (here ~0.0025): 0.02 is > 5 SD.
    assert abs(same) < 0.02
    assert shifted > 0.3


def test_model_do_samples_with_the_intervened_value_and_needs_a_pool():
    adj = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    model = StructuralMLP(adj, ["a", "b"], hidden_dims=(4,))
    with pytest.raises(RuntimeError, match="set_noise_pool"):
        model.do({"a": 1.0}, n=10)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    model.set_noise_pool(x)
    with torch.no_grad():
        samples = model.do({"a": 1.0}, n=200, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (200, 2) and torch.all(samples[:, 0] == 1.0)
    assert samples[:, 1].std() > 0  # b keeps its resampled noise


class _Oracle:
    """A perfect do-query network: answers with the zoo's own mechanisms and each row's exact noise."""

    def __init__(self, scm) -> None:
        self.scm = scm

    def interventional(self, x_ref: torch.Tensor, interventions) -> torch.Tensor:
        return self.scm.counterfactual(x_ref, interventions)

    def counterfactual(self, x_ref: torch.Tensor, interventions) -> torch.Tensor:
        return self.scm.counterfactual(x_ref, interventions)


@pytest.mark.parametrize("name", ["nonlin_simpson", "toy", "mediator_nonadd", "symprod_simpson"])
def test_the_exact_scm_scores_zero_on_a_small_reference_set(name):
    """The old scoring (population curve) puts a floor of ≈ SD(Y's noise part)/√n under every model; the
    rows' exact do-response removes it: the oracle scores 0 up to float32 rounding of the reference rows."""
    from causal_engine.intervene.data import ZooDataModule
    from causal_engine.intervene.module import score_answers

    dm = ZooDataModule(name, n_train=64, n_test=100, n_mmd=100, seed=0)
    dm.setup("fit")
    found = score_answers(_Oracle(dm.scm), dm.graph, dm.test_x.double(), dm.truth, dm.cf_shift)
    assert float(found["do_rmse"]) < 1e-5
    assert float(found["ate_error"]) < 1e-5
    assert float(found["cf_rmse"]) < 1e-5
    # The population-scored error is the rows' sampling error (SD of Y's noise part / √100): 0.11–0.58 here.
    assert float(found["do_rmse_pop"]) > 0.05
    if name == "symprod_simpson":  # x0 · x1: the rows' mean of x0 scales the effect, so the ATE is floored too
        assert float(found["ate_error_pop"]) > 0.1
    # MMD² against independent true draws is unbiased: it scatters around 0 (SD ~ 1/n), no floor.
    assert abs(float(found["mmd"])) < 0.05


def test_do_mean_on_rows_is_the_population_mean_for_many_rows():
    from causal_engine.intervene.zoo import get_scm

    scm = get_scm("nonlin_simpson")
    grid = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64)
    x = scm.sample(100_000, torch.Generator().manual_seed(4))
    rows = scm.do_mean_on_rows(x, grid)
    # Y's noise part 1.5 x0 + tanh(z) has SD < 1.7, so 4 SE = 4 · 1.7 / √1e5 ≈ 0.022.
    assert torch.allclose(rows, torch.tanh(2 * grid) - 1, atol=0.022)
