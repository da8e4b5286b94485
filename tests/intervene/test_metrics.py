"""Interventional metrics (pure functions) and model.do sampling."""

import pytest
import torch

from causal_engine.intervene.models import CausalMLP
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
    model = CausalMLP(adj, ["a", "b"], hidden_dims=(4,))
    with pytest.raises(RuntimeError, match="set_noise_pool"):
        model.do({"a": 1.0}, n=10)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    model.set_noise_pool(x)
    with torch.no_grad():
        samples = model.do({"a": 1.0}, n=200, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (200, 2) and torch.all(samples[:, 0] == 1.0)
    assert samples[:, 1].std() > 0  # b keeps its resampled noise
