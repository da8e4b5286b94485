"""Each edge mechanism matches the seed's formula (constants and clamps) on known inputs."""

from __future__ import annotations

import math

import pytest
import torch

from causal_engine.scm import MECHANISMS, NO_EDGE, apply_mechanisms, mechanism_table
from causal_engine.scm.mechanisms import KERNELS

INPUTS = [-12.0, -5.5, -4.0, -3.2, -1.0, -0.25, 0.0, 1e-7, 0.5, 2.0, 3.5, 4.9, 6.0, 30.0]

FORMULAS = {
    "linear": lambda x: 2.0 * x,
    "negative_linear": lambda x: -2.0 * x,
    "sin": math.sin,
    "cos": math.cos,
    "tanh": math.tanh,
    "log": lambda x: math.log(abs(x) + 1e-5),
    "exp": lambda x: math.exp(min(max(x, -5.0), 5.0)),
    "sqrt": lambda x: math.sqrt(abs(x)),
    "quadratic": lambda x: min(max(x, -5.0), 5.0) ** 2,
    "cubic": lambda x: min(max(x, -3.0), 3.0) ** 3,
}


def test_mechanism_names_are_the_seeds_ten_in_order() -> None:
    assert tuple(FORMULAS) == MECHANISMS
    assert len(KERNELS) == len(MECHANISMS)


@pytest.mark.parametrize("name", MECHANISMS)
def test_each_mechanism_matches_its_formula(name: str) -> None:
    x = torch.tensor(INPUTS, dtype=torch.float64)
    expected = torch.tensor([FORMULAS[name](v) for v in INPUTS], dtype=torch.float64)
    kind = torch.full_like(x, MECHANISMS.index(name), dtype=torch.long)
    torch.testing.assert_close(apply_mechanisms(kind, x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mechanism_table(x)[MECHANISMS.index(name)], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("index", range(len(MECHANISMS)))
def test_kernels_work_in_place(index: int) -> None:
    """``simulate`` overwrites its buffer with ``KERNELS[m](x, x)``; that must equal the out-of-place value."""
    x = torch.tensor(INPUTS, dtype=torch.float64)
    expected = mechanism_table(x)[index]
    buffer = x.clone()
    KERNELS[index](buffer, buffer)
    assert torch.equal(buffer, expected)


def test_clamps_bound_the_explosive_mechanisms() -> None:
    big = torch.tensor([-1e6, 1e6], dtype=torch.float64)
    table = mechanism_table(big)
    assert table[MECHANISMS.index("exp")].tolist() == [math.exp(-5.0), math.exp(5.0)]
    assert table[MECHANISMS.index("quadratic")].tolist() == [25.0, 25.0]
    assert table[MECHANISMS.index("cubic")].tolist() == [-27.0, 27.0]


def test_no_edge_contributes_zero_and_kinds_broadcast() -> None:
    kind = torch.tensor([[NO_EDGE, 0, 9]])  # [1, 3]
    x = torch.tensor([[4.0], [-4.0]], dtype=torch.float64)  # [2, 1]
    out = apply_mechanisms(kind, x)
    assert out.shape == (2, 3)
    assert out.tolist() == [[0.0, 8.0, 27.0], [0.0, -8.0, -27.0]]


def test_bad_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="kind must lie in"):
        apply_mechanisms(torch.tensor([10]), torch.zeros(1))
    with pytest.raises(TypeError, match="long tensor"):
        apply_mechanisms(torch.tensor([1.0]), torch.zeros(1))
