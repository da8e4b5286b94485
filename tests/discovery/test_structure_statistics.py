"""The nonlinear dependence feature sees what correlation cannot, and is about zero without dependence."""

from __future__ import annotations

import math

import torch

from causal_engine.discovery.encoder import _nonlinear_dependence, _standard


def test_nonlinear_dependence_is_null_for_independent_columns_and_sees_a_square() -> None:
    gen = torch.Generator().manual_seed(0)
    s, graphs = 400, 64
    x = torch.randn(graphs, s, 1, generator=gen)
    noise = torch.randn(graphs, s, 1, generator=gen)
    independent = torch.randn(graphs, s, 1, generator=gen)
    square = x**2 + 0.3 * noise  # uncorrelated with x, yet a function of it
    columns = _standard(torch.cat([x, independent, square], 2))  # [G, S, 3]
    dep, _ = _nonlinear_dependence(columns, columns)
    pearson = (columns.transpose(1, 2) @ columns / (s - 1))[:, 0]  # [G, 3]
    # The squared statistic P is a mean of 16 squared correlations less their null mean 1 / (S - 1); each has
    # null sd sqrt(2) / (S - 1), so P's sd is at most that. Clamped at 0 its mean is at most sd / sqrt(2 pi);
    # averaged over the graphs, allow 3 standard errors more.
    null_sd = math.sqrt(2) / (s - 1)
    power = dep[:, 0, 1] ** 2
    assert float(power.mean()) < null_sd / math.sqrt(2 * math.pi) + 3 * null_sd / math.sqrt(graphs)
    assert float(pearson[:, 2].abs().mean()) < 3 / math.sqrt(s)  # correlation misses the square ...
    assert float(dep[:, 0, 2].min()) > math.sqrt(10 * null_sd)  # ... the Fourier views do not, in every graph
