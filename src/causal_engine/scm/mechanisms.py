"""The ten edge mechanisms of the seed notebook's ``SCMGenerator``, vectorised.

A node's value is ``clamp(noise + sum_parents f_edge(parent), -NODE_CLAMP, NODE_CLAMP)``; each edge carries one
of the functions below. The constants and clamps are the seed's, so the prior matches what the notebook trained
on (the seed's "tan" was ``np.tanh``; we call it what it computes). The inner clips keep ``exp`` / powers finite
and the outer node clamp keeps deep graphs from exploding, so every simulated value is finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

MECHANISMS: tuple[str, ...] = (
    "linear",  # 2 x
    "negative_linear",  # -2 x
    "sin",  # sin x
    "cos",  # cos x
    "tanh",  # tanh x
    "log",  # log(|x| + 1e-5)
    "exp",  # exp(clip(x, -5, 5))
    "sqrt",  # sqrt(|x|)
    "quadratic",  # clip(x, -5, 5)^2
    "cubic",  # clip(x, -3, 3)^3
)
NUM_MECHANISMS = len(MECHANISMS)
NO_EDGE = -1  # mechanism index where there is no edge
NODE_CLAMP = 20.0  # |value| bound of every node that has parents (the seed's global clamp)
LOG_EPS = 1e-5
EXP_CLIP = 5.0
QUADRATIC_CLIP = 5.0
CUBIC_CLIP = 3.0


# KERNELS[m](x, out) writes MECHANISMS[m](x) into ``out`` (which may be ``x`` itself) without allocating: the
# single definition of the formulas, used for whole tables and for the per-kind row segments in ``simulate``.
KERNELS: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    lambda x, out: torch.mul(x, 2.0, out=out),
    lambda x, out: torch.mul(x, -2.0, out=out),
    lambda x, out: torch.sin(x, out=out),
    lambda x, out: torch.cos(x, out=out),
    lambda x, out: torch.tanh(x, out=out),
    lambda x, out: torch.abs(x, out=out).add_(LOG_EPS).log_(),
    lambda x, out: torch.clamp(x, -EXP_CLIP, EXP_CLIP, out=out).exp_(),
    lambda x, out: torch.abs(x, out=out).sqrt_(),
    lambda x, out: torch.clamp(x, -QUADRATIC_CLIP, QUADRATIC_CLIP, out=out).square_(),
    lambda x, out: torch.clamp(x, -CUBIC_CLIP, CUBIC_CLIP, out=out).pow_(3),
)


def mechanism_table(x: Tensor) -> Tensor:
    """All ten mechanisms of ``x`` at once: ``[...] -> [10, ...]``, row m is ``MECHANISMS[m]`` applied to x."""
    out = x.new_empty((NUM_MECHANISMS, *x.shape))
    for kernel, row in zip(KERNELS, out, strict=True):
        kernel(x, row)
    return out


def apply_mechanisms(kind: Tensor, x: Tensor) -> Tensor:
    """Apply mechanism ``kind`` (an index into ``MECHANISMS``, or ``NO_EDGE`` = -1 for 0) to ``x`` elementwise.

    ``kind`` (long) and ``x`` broadcast against each other; the result has the broadcast shape. ``NO_EDGE``
    maps to 0 so that ``apply_mechanisms(scm.mechanisms, x[..., :, None]).sum(-2)`` is the parents' total effect.
    """
    if kind.dtype != torch.long:
        raise TypeError(f"kind must be a long tensor of mechanism indices, got dtype {kind.dtype}")
    if kind.numel() and (int(kind.min()) < NO_EDGE or int(kind.max()) >= NUM_MECHANISMS):
        raise ValueError(
            f"kind must lie in [{NO_EDGE}, {NUM_MECHANISMS - 1}] (index into MECHANISMS, -1 = no edge); "
            f"got values in [{int(kind.min())}, {int(kind.max())}]"
        )
    kind, x = torch.broadcast_tensors(kind, x)
    table = mechanism_table(x.contiguous())  # [10, ...]
    picked = table.gather(0, kind.clamp(min=0).unsqueeze(0)).squeeze(0)
    return torch.where(kind == NO_EDGE, torch.zeros_like(picked), picked)


def mechanism_indices(names: Sequence[str]) -> Tensor:
    """Indices of mechanism ``names`` in ``MECHANISMS`` (a clear error names an unknown one)."""
    if isinstance(names, str):
        names = (names,)
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown or not names:
        raise ValueError(f"mechanisms must be a non-empty subset of {MECHANISMS}; unknown: {unknown}")
    return torch.tensor([MECHANISMS.index(n) for n in names], dtype=torch.long)
