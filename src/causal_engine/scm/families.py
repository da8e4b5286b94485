"""Mechanism and noise families of the broad PFN prior, vectorised over graphs, nodes and parent slots.

The seed's simulator (``model.simulate``) gives every edge one of ten fixed functions and every node Gaussian
noise; a PFN trained only on that learns those ten functions' fingerprints. Here each graph draws one mechanism
family and one noise family, and every node draws its own parameters, so that the prior covers linear,
smooth, saturating, polynomial, additive and non-additive parent functions with light- and heavy-tailed, skewed
and multimodal noise.

A node's structural equation is ``x_j = gain_j * f_j(x_pa) + scale_j(x_pa) * eps_j``. Parents enter through a
padded slot list (``parents [B, d, K]``, ``K`` = the batch's largest in-degree), so a node costs O(K · S), not
O(d · S). ``gain_j`` is fixed once per SCM from the observational rows (see ``BroadSCM``); the noise ``eps`` is
an explicit input, so counterfactuals are exact by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from causal_engine.scm.mechanisms import NODE_CLAMP, NUM_MECHANISMS, apply_mechanisms

# Mechanism families (one per graph). "notebook" is the seed's ten per-edge functions, unweighted and
# unrescaled, exactly as the seed's prior (only its noise comes from the graph's noise family).
MECHANISM_FAMILIES: tuple[str, ...] = ("linear", "rff", "mlp_additive", "mlp", "sigmoid", "polynomial", "notebook")
NOISE_FAMILIES: tuple[str, ...] = ("gaussian", "laplace", "student_t", "uniform", "skewed", "mixture")
HIDDEN = 8  # hidden units / random features per node (or per parent, for the additive MLP)
POLY_CLIP = 3.0  # a polynomial's input is clipped here so interventions far out cannot overflow


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


def signed_log_uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    """Magnitudes log-uniform in [low, high] with a random sign (weak and strong edges alike)."""
    magnitude = torch.exp(_uniform(shape, math.log(low), math.log(high), generator))
    sign = torch.randint(2, shape, generator=generator, device=generator.device) * 2 - 1
    return magnitude * sign


def draw_mechanism_params(
    family: str, batch: int, d: int, k: int, weights: Tensor, generator: torch.Generator
) -> dict[str, Tensor]:
    """Per-node parameters of ``family`` for ``[B, d]`` nodes with ``k`` parent slots; ``weights [B, d, K]``
    are the edge weights (0 in empty slots), which every family but "notebook" uses as the edges' strengths."""
    shape, h = (batch, d, k), HIDDEN
    if family == "linear" or family == "notebook":
        if family == "notebook":
            return {"kind": torch.randint(NUM_MECHANISMS, shape, generator=generator, device=generator.device)}
        return {"w": weights}
    if family == "rff":  # a GP draw with an RBF kernel of length scale ell: cos features of the weighted parents
        ell = _uniform((batch, d, 1, 1), 0.5, 2.0, generator)
        omega = torch.randn(batch, d, k, h, generator=generator, device=generator.device) / ell
        return {
            "w": weights,
            "omega": omega,
            "phase": _uniform((batch, d, h), 0.0, 2 * math.pi, generator),
            "amp": torch.randn(batch, d, h, generator=generator, device=generator.device) * math.sqrt(2.0 / h),
        }
    if family == "mlp_additive":  # sum over parents of a random 1-hidden-layer tanh net of that parent alone
        return {
            "w": weights,
            "inner": torch.randn(batch, d, k, h, generator=generator, device=generator.device) * 1.5,
            "bias": torch.randn(batch, d, k, h, generator=generator, device=generator.device),
            "outer": torch.randn(batch, d, k, h, generator=generator, device=generator.device) / math.sqrt(h),
        }
    if family == "mlp":  # one tanh net of all parents together: interactions, not a sum of parent terms
        return {
            "w": weights,
            "inner": torch.randn(batch, d, k, h, generator=generator, device=generator.device) * 1.5,
            "bias": torch.randn(batch, d, h, generator=generator, device=generator.device),
            "outer": torch.randn(batch, d, h, generator=generator, device=generator.device) / math.sqrt(h),
        }
    if family == "sigmoid":  # saturating dose-response per parent: w * sigmoid(slope * (x - threshold))
        return {
            "w": weights,
            "slope": _uniform(shape, 1.0, 5.0, generator),
            "threshold": torch.randn(shape, generator=generator, device=generator.device) * 0.5,
        }
    if family == "polynomial":  # per parent a x + b x^2 + c x^3 on the clipped input
        return {"w": weights, "coef": torch.randn(batch, d, k, 3, generator=generator, device=generator.device)}
    raise ValueError(f"unknown mechanism family {family!r}; choose from {MECHANISM_FAMILIES}")


def evaluate_mechanism(family: str, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """The parents' term ``f(x_pa)`` of one node per graph: parents ``x [B, K, S]`` (0 in empty slots, whose
    weights are 0 too) and that node's parameters (``params`` gathered at the node, leading dim B) -> [B, S]."""
    if family == "notebook":
        return apply_mechanisms(params["kind"][:, :, None], x).mul_(params["valid"][:, :, None]).sum(1)
    w = params["w"][:, :, None]  # [B, K, 1]
    if family == "linear":
        return (w * x).sum(1)
    if family == "rff":
        z = torch.einsum("bks,bkh->bhs", w * x, params["omega"]) + params["phase"][:, :, None]  # [B, H, S]
        return (params["amp"][:, :, None] * torch.cos(z)).sum(1)
    if family == "mlp_additive":
        z = torch.tanh(x[..., None] * params["inner"][:, :, None] + params["bias"][:, :, None])  # [B, K, S, H]
        return (w * (z * params["outer"][:, :, None]).sum(-1)).sum(1)
    if family == "mlp":
        z = torch.einsum("bks,bkh->bhs", w * x, params["inner"]) + params["bias"][:, :, None]  # [B, H, S]
        return (params["outer"][:, :, None] * torch.tanh(z)).sum(1)
    if family == "sigmoid":
        return (w * torch.sigmoid(params["slope"][:, :, None] * (x - params["threshold"][:, :, None]))).sum(1)
    if family == "polynomial":
        c = params["coef"][:, :, None]  # [B, K, 1, 3]
        t = x.clamp(-POLY_CLIP, POLY_CLIP)
        return (w * (c[..., 0] * t + c[..., 1] * (t * t - 1) + c[..., 2] * t * t * t / 3)).sum(1)
    raise ValueError(f"unknown mechanism family {family!r}; choose from {MECHANISM_FAMILIES}")


def _gaussian(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=g, device=g.device)


def _laplace(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    u = torch.rand(shape, generator=g, device=g.device).clamp_(1e-7, 1 - 1e-7) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2.0)


def _student_t(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    """t with 3 degrees of freedom scaled to unit variance (heavy tails, finite variance)."""
    df = 3.0
    chi2 = torch.randn((*shape, 3), generator=g, device=g.device).square().sum(-1)
    return _gaussian(shape, g) / torch.sqrt(chi2 / df) / math.sqrt(df / (df - 2))


def _uniform_noise(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=g, device=g.device) * 2 - 1) * math.sqrt(3.0)


def _skewed(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    """Centred exponential (skewness 2), unit variance; the sign of the skew is drawn per node."""
    e = -torch.log(torch.rand(shape, generator=g, device=g.device).clamp_(min=1e-7)) - 1.0
    sign = torch.randint(2, (*shape[:-1], 1), generator=g, device=g.device) * 2 - 1
    return e * sign


def _mixture(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    """Equal mixture of N(-m, s^2) and N(m, s^2) with m^2 + s^2 = 1 (bimodal, unit variance), m = 0.9."""
    m = 0.9
    side = torch.randint(2, shape, generator=g, device=g.device) * 2 - 1
    return side * m + _gaussian(shape, g) * math.sqrt(1 - m * m)


# Each draws standardised noise (mean 0, variance 1) of the given shape [B, d, S].
NOISE_SAMPLERS: dict[str, Callable[[tuple[int, ...], torch.Generator], Tensor]] = {
    "gaussian": _gaussian,
    "laplace": _laplace,
    "student_t": _student_t,
    "uniform": _uniform_noise,
    "skewed": _skewed,
    "mixture": _mixture,
}


# (step p, node [B], value [B, S]) -> value with the interventions of that step applied; the node's
# observational rows are value[:, :num_ref] and must be left alone (they calibrate gains and do-values)
BroadIntervene = Callable[[int, Tensor, Tensor], Tensor]


@dataclass
class BroadSCM:
    """B SCMs on d nodes sharing one mechanism family (the prior simulates each family's graphs together).

    adjacency [B, d, d] float {0, 1} (i -> j); order [B, d] a topological order; parents [B, d, K] long (slot
    k of node j is a parent, or 0 where ``valid [B, d, K]`` is False); params: the family's per-node
    parameters, leading dims [B, d]; noise_scale [B, d] the sd of each node's noise term; hetero [B, d] >= 0:
    the noise sd is ``noise_scale * (1 + hetero * tanh(f)^2)`` (0 = homoscedastic); signal [B, d] the
    observational sd that the parents' term is rescaled to (``rescale``), which keeps every node's scale
    independent of its depth; gain [B, d] that rescaling factor, fixed by the first simulation (None before).
    """

    family: str
    adjacency: Tensor
    order: Tensor
    parents: Tensor
    valid: Tensor
    params: dict[str, Tensor]
    noise_scale: Tensor
    hetero: Tensor
    signal: Tensor
    rescale: bool
    gain: Tensor | None = None


def parent_slots(adjacency: Tensor) -> tuple[Tensor, Tensor]:
    """Each node's parents as padded slots: (indices [B, d, K] long, valid [B, d, K] bool), K = max in-degree."""
    by_child = adjacency.transpose(1, 2)  # [B, child, parent]
    k = max(1, int(by_child.sum(-1).max()))
    present, index = by_child.topk(k, dim=-1)
    return index, present > 0


def simulate_broad(scm: BroadSCM, eps: Tensor, num_ref: int, intervene: BroadIntervene | None = None) -> Tensor:
    """Evaluate the SCMs on standardised node-major noise ``eps [B, d, S]``; returns x ``[B, d, S]``.

    The first ``num_ref`` samples are the observational reference rows: the first call fixes each node's gain
    from them (so the gain is a property of the SCM, shared by every row, and a counterfactual is an exact
    re-run with the same noise). Nodes with parents are clamped to ``±NODE_CLAMP`` like the seed's.
    """
    batch, d, _ = eps.shape
    rows = torch.arange(batch, device=eps.device)
    x = torch.zeros_like(eps)
    calibrate = scm.gain is None
    if calibrate:
        scm.gain = torch.ones(batch, d, device=eps.device)
    for p in range(d):
        node = scm.order[:, p]  # [B]
        slots, valid = scm.parents[rows, node], scm.valid[rows, node]  # [B, K]
        inputs = x[rows[:, None], slots] * valid[..., None]  # [B, K, S]
        params = {name: value[rows, node] for name, value in scm.params.items()}
        params["valid"] = valid.float()
        has_parents = valid.any(-1)[:, None]  # [B, 1]
        # a root has no parents' term (rff and mlp would otherwise give it a constant, rescaled to a huge one)
        f = evaluate_mechanism(scm.family, params, inputs) * has_parents  # [B, S]
        if scm.rescale:
            if calibrate:
                spread = f[:, :num_ref].std(1) if num_ref > 1 else torch.ones(batch, device=eps.device)
                scm.gain[rows, node] = scm.signal[rows, node] / spread.clamp_min(1e-3)
            f = f * scm.gain[rows, node][:, None]
        scale = scm.noise_scale[rows, node][:, None] * (1 + scm.hetero[rows, node][:, None] * torch.tanh(f) ** 2)
        value = f + scale * eps[rows, node]
        value = torch.where(has_parents, value.clamp(-NODE_CLAMP, NODE_CLAMP), value)
        if intervene is not None:
            value = intervene(p, node, value)
        x[rows, node] = value
    return x
