"""Benchmark SCMs for causal fine-tuning, CSuite-style, simulated from their equations (torch, vectorised).

Each SCM knows its graph, treatment X and outcome Y, and answers exactly what a trained model is scored
against: observational and interventional samples, E[Y | do(X = v)] (analytic where the maths gives it,
else Monte Carlo with >= 1e5 draws and a reported standard error), and unit-level counterfactuals (every
noise here is invertible given the parents, so abduction is exact).

Structures (treatment -> outcome in brackets):
- chain3      x0 -> x1 -> x2                         [x0 -> x2]  total effect through a descendant input
- fork3       x1 <- x0 -> x2                         [x1 -> x2]  confounded, true effect zero
- collider3   x0 -> x2 <- x1                         [x0 -> x1]  true effect zero; conditioning on x2 biases
- mediator    x0 -> x1 -> x2, x0 -> x2               [x0 -> x2]  total = direct + mediated
- large_backdoor  9 nodes, x0 -> {x1, x2}, x1 -> x3 -> x5, x2 -> x4 -> x6, {x5, x6} -> x7, {x7, x5, x6} -> x8
                                                     [x7 -> x8]  a long back-door path to adjust for
Each comes in three variants, with standard normal noise u_j and weights w_ij listed in `_GRAPHS`:
- `_linear`   x_j = Σ_i w_ij x_i + σ_j u_j                                   (E[Y|do] analytic: noise-free pass)
- `_nonlin`   x_j = Σ_i w_ij φ(x_i) + σ_j u_j,  φ(t) = tanh(2t) + 0.2 t²     (nonlinear additive; Monte Carlo)
- `_nonadd`   x_j = Σ_i w_ij φ(x_i) + 0.5 tanh(x_a) tanh(x_b) + σ_j (1 + 0.5 tanh²(x̄_pa)) u_j
              (x_a, x_b the first two parents, x̄_pa the parents' mean; non-additive, heteroscedastic but
              invertible; Monte Carlo)
Roots are x_j = σ_j u_j.

Two fixed SCMs:
- nonlin_simpson (exactly as CSuite's generator code) [x1 -> x2]:
  x0 ~ N(0,1); x1 = softplus(1 − x0) − 1.5 + 0.15 ε1; x2 = tanh(2 x1) + 1.5 x0 + tanh(z) − 1, z ~ N(0,1);
  x3 = 5 tanh((x2 − 4)/5) + 3 + L, L ~ Laplace(0, 0.1). E[x2 | do(x1 = v)] = tanh(2v) − 1.
- symprod_simpson (CSuite's structure x0 -> x1, {x0, x1} -> x2, x2 -> x3 with a symmetric product; the
  equations are ours, not CSuite's) [x1 -> x2]:
  x0 ~ N(0,1); x1 = tanh(1.5 x0) + 0.2 ε1; x2 = x0 x1 + tanh(x1) + 0.3 ε2; x3 = tanh(x2) + 0.5 x2 + 0.2 ε3.
  E[x2 | do(x1 = v)] = E[x0] v + tanh(v) = tanh(v).
- toy (the CausalMLP usage example's SCM, the negative control) [x2 -> y]: x1, x2, x3 ~ N(0,1) independent,
  y = x1 + 2 x2 − 3 x3 + 0.1 ε. Substitution already is the do-operator here: every model should tie.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import softplus

from causal_engine.errors import UserError
from causal_engine.intervene.do import Interventions

# mechanism(parents' columns [n, k], noise [n]) -> node [n]; inverse(parents [n, k], node [n]) -> noise [n]
Mechanism = Callable[[Tensor, Tensor], Tensor]
Inverse = Callable[[Tensor, Tensor], Tensor]
NoiseSampler = Callable[[int, torch.Generator | None], Tensor]


def _normal(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(n, generator=generator, dtype=torch.float64)


def _laplace(scale: float) -> NoiseSampler:
    def sample(n: int, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64) - 0.5  # inverse-CDF draw
        return -scale * torch.sign(u) * torch.log1p(-2 * u.abs())

    return sample


@dataclass(frozen=True)
class Node:
    parents: tuple[int, ...]
    mechanism: Mechanism
    inverse: Inverse
    noise: NoiseSampler = _normal


@dataclass
class ZooSCM:
    """A known SCM over `names` with a designated treatment and outcome (see module docstring)."""

    name: str
    names: list[str]
    nodes: list[Node]
    treatment: int
    outcome: int
    # Exact E[Y | do(X = v)] for the designated pair, when the maths gives it.
    analytic_do_mean: Callable[[Tensor], Tensor] | None = None
    linear: bool = False
    adjacency: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        d = len(self.names)
        self.adjacency = np.zeros((d, d))
        for j, node in enumerate(self.nodes):
            if any(i >= j for i in node.parents):
                raise ValueError(f"{self.name}: nodes must be listed in topological order")
            self.adjacency[list(node.parents), j] = 1.0

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exogenous noise [n, D] (float64)."""
        return torch.stack([node.noise(n, generator) for node in self.nodes], 1)

    def simulate(self, noise: Tensor, interventions: Interventions | Mapping | None = None) -> Tensor:
        """Variables [n, D] from noise [n, D] under hard/shift/conditional interventions (per row)."""
        iv = Interventions.parse(interventions, self.names)
        cols: list[Tensor] = []
        for j, node in enumerate(self.nodes):
            parents = torch.stack([cols[i] for i in node.parents], 1) if node.parents else noise[:, :0]
            value = node.mechanism(parents, noise[:, j])
            spec = iv.nodes.get(j)
            if spec is not None:
                context = torch.stack(cols + [value] + [torch.zeros_like(value)] * (self.num_nodes - j - 1), 1)
                target, rows = spec.resolve(context)
                value = torch.where(rows, target if spec.kind == "hard" else value + target, value)
            cols.append(value)
        return torch.stack(cols, 1)

    def sample(
        self, n: int, generator: torch.Generator | None = None, interventions: Interventions | Mapping | None = None
    ) -> Tensor:
        """n observational (or interventional) rows [n, D], float64."""
        return self.simulate(self.sample_noise(n, generator), interventions)

    def abduct(self, x: Tensor) -> Tensor:
        """The exact noise [n, D] behind observational rows x [n, D]."""
        x = x.to(torch.float64)
        return torch.stack([node.inverse(x[:, list(node.parents)], x[:, j]) for j, node in enumerate(self.nodes)], 1)

    def counterfactual(self, x: Tensor, interventions: Interventions | Mapping) -> Tensor:
        """Exact unit-level counterfactuals [n, D]: abduct each row's noise, intervene, recompute."""
        return self.simulate(self.abduct(x), interventions)

    def do_mean(
        self,
        values: Tensor,
        treatment: int | None = None,
        outcome: int | None = None,
        n_mc: int = 100_000,
        seed: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """(E[Y | do(X = v)] [V], its standard error [V]) for each v in `values` [V].

        Analytic (SE 0) for the designated pair when known, or for any pair of a linear SCM (noise-free
        pass, since every noise has mean zero); else Monte Carlo with `n_mc` (>= 1e5) draws per value,
        common random numbers across values.
        """
        t = self.treatment if treatment is None else treatment
        y = self.outcome if outcome is None else outcome
        values = torch.as_tensor(values, dtype=torch.float64)
        if self.analytic_do_mean is not None and (t, y) == (self.treatment, self.outcome):
            return self.analytic_do_mean(values), torch.zeros_like(values)
        if self.linear:
            noise = torch.zeros(len(values), self.num_nodes, dtype=torch.float64)
            return self.simulate(noise, {t: values})[:, y], torch.zeros_like(values)
        if n_mc < 100_000:
            raise ValueError(f"n_mc must be >= 100000 for an exact-enough ground truth, got {n_mc}")
        noise = self.sample_noise(n_mc, torch.Generator().manual_seed(seed))
        means, ses = [], []
        for v in values:
            draws = self.simulate(noise, {t: float(v)})[:, y]
            means.append(draws.mean())
            ses.append(draws.std() / n_mc**0.5)
        return torch.stack(means), torch.stack(ses)

    def do_mean_on_rows(
        self, x_ref: Tensor, values: Tensor, treatment: int | None = None, outcome: int | None = None
    ) -> Tensor:
        """The reference rows' own do-response [V]: for each v in `values` [V], the mean over the rows
        x_ref [n, D] of Y_i under do(X = v) with row i's exact (abducted) exogenous noise.

        This, not the population E[Y | do(X = v)], is what a model averaging over the same rows' noise
        should reproduce; the two differ by the rows' sampling error (≈ SD of Y's noise part / √n).
        """
        t = self.treatment if treatment is None else treatment
        y = self.outcome if outcome is None else outcome
        noise = self.abduct(x_ref)  # [n, D]
        values = torch.as_tensor(values, dtype=torch.float64)
        return torch.stack([self.simulate(noise, {t: float(v)})[:, y].mean() for v in values])

    def treatment_grid(self, n_quantiles: int = 9, n_mc: int = 100_000, seed: int = 0) -> Tensor:
        """The 5–95 % quantiles of X (observational) at `n_quantiles` evenly spaced levels [V]."""
        x = self.sample(n_mc, torch.Generator().manual_seed(seed))[:, self.treatment]
        return torch.quantile(x, torch.linspace(0.05, 0.95, n_quantiles, dtype=torch.float64))


# --- the generic structures ---------------------------------------------------------------------------------


def _phi(t: Tensor) -> Tensor:
    return torch.tanh(2 * t) + 0.2 * t**2


# name -> (number of nodes, {child: ((parent, weight), ...)}, noise scale per node, treatment, outcome)
_GRAPHS: dict[str, tuple[int, dict[int, tuple[tuple[int, float], ...]], list[float], int, int]] = {
    "chain3": (3, {1: ((0, 0.9),), 2: ((1, -1.1),)}, [1.0, 0.5, 0.5], 0, 2),
    "fork3": (3, {1: ((0, 1.0),), 2: ((0, 1.5),)}, [1.0, 0.5, 0.5], 1, 2),
    "collider3": (3, {2: ((0, 1.0), (1, 1.0))}, [1.0, 1.0, 0.3], 0, 1),
    "mediator": (3, {1: ((0, 1.0),), 2: ((0, 0.5), (1, 1.0))}, [1.0, 0.5, 0.5], 0, 2),
    "large_backdoor": (
        9,
        {
            1: ((0, 0.8),),
            2: ((0, -0.8),),
            3: ((1, 0.9),),
            4: ((2, 0.9),),
            5: ((3, 1.0),),
            6: ((4, -1.0),),
            7: ((5, 0.7), (6, 0.7)),
            8: ((7, 1.0), (5, 0.8), (6, -0.6)),
        },
        [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4],
        7,
        8,
    ),
}
VARIANTS = ("linear", "nonlin", "nonadd")


def _generic_node(edges: tuple[tuple[int, float], ...], sigma: float, variant: str) -> Node:
    parents = tuple(i for i, _ in edges)
    weights = torch.tensor([w for _, w in edges], dtype=torch.float64)

    def mean(pa: Tensor) -> Tensor:
        if not parents:
            return torch.zeros(pa.shape[0], dtype=torch.float64)
        if variant == "linear":
            return pa @ weights
        out = _phi(pa) @ weights
        if variant == "nonadd" and len(parents) >= 2:
            out = out + 0.5 * torch.tanh(pa[:, 0]) * torch.tanh(pa[:, 1])
        return out

    def scale(pa: Tensor) -> Tensor | float:
        if variant == "nonadd" and parents:
            return sigma * (1 + 0.5 * torch.tanh(pa.mean(1)) ** 2)
        return sigma

    return Node(parents, lambda pa, u: mean(pa) + scale(pa) * u, lambda pa, x: (x - mean(pa)) / scale(pa))


def _generic(structure: str, variant: str) -> ZooSCM:
    d, edges, sigmas, t, y = _GRAPHS[structure]
    nodes = [_generic_node(edges.get(j, ()), sigmas[j], variant) for j in range(d)]
    return ZooSCM(f"{structure}_{variant}", [f"x{j}" for j in range(d)], nodes, t, y, linear=variant == "linear")


def nonlin_simpson() -> ZooSCM:
    """CSuite nonlin_simpson, exactly as its generator code (module docstring)."""
    nodes = [
        Node((), lambda pa, u: u, lambda pa, x: x),
        Node(
            (0,),
            lambda pa, u: softplus(1 - pa[:, 0]) - 1.5 + 0.15 * u,
            lambda pa, x: (x - softplus(1 - pa[:, 0]) + 1.5) / 0.15,
        ),
        Node(
            (0, 1),
            lambda pa, z: torch.tanh(2 * pa[:, 1]) + 1.5 * pa[:, 0] + torch.tanh(z) - 1,
            lambda pa, x: torch.atanh((x - torch.tanh(2 * pa[:, 1]) - 1.5 * pa[:, 0] + 1).clamp(-1 + 1e-15, 1 - 1e-15)),
        ),
        Node(
            (2,),
            lambda pa, u: 5 * torch.tanh((pa[:, 0] - 4) / 5) + 3 + u,
            lambda pa, x: x - 5 * torch.tanh((pa[:, 0] - 4) / 5) - 3,
            _laplace(0.1),
        ),
    ]
    return ZooSCM("nonlin_simpson", ["x0", "x1", "x2", "x3"], nodes, 1, 2, lambda v: torch.tanh(2 * v) - 1)


def symprod_simpson() -> ZooSCM:
    """Symmetric-product Simpson SCM (module docstring; structure after CSuite, equations ours)."""
    nodes = [
        Node((), lambda pa, u: u, lambda pa, x: x),
        Node(
            (0,),
            lambda pa, u: torch.tanh(1.5 * pa[:, 0]) + 0.2 * u,
            lambda pa, x: (x - torch.tanh(1.5 * pa[:, 0])) / 0.2,
        ),
        Node(
            (0, 1),
            lambda pa, u: pa[:, 0] * pa[:, 1] + torch.tanh(pa[:, 1]) + 0.3 * u,
            lambda pa, x: (x - pa[:, 0] * pa[:, 1] - torch.tanh(pa[:, 1])) / 0.3,
        ),
        Node(
            (2,),
            lambda pa, u: torch.tanh(pa[:, 0]) + 0.5 * pa[:, 0] + 0.2 * u,
            lambda pa, x: (x - torch.tanh(pa[:, 0]) - 0.5 * pa[:, 0]) / 0.2,
        ),
    ]
    return ZooSCM("symprod_simpson", ["x0", "x1", "x2", "x3"], nodes, 1, 2, torch.tanh)


def toy() -> ZooSCM:
    """The seed's y = x1 + 2 x2 − 3 x3 + 0.1 ε with independent inputs: the negative control."""
    root = Node((), lambda pa, u: u, lambda pa, x: x)
    coef = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    outcome = Node((0, 1, 2), lambda pa, u: pa @ coef + 0.1 * u, lambda pa, x: (x - pa @ coef) / 0.1)
    return ZooSCM("toy", ["x1", "x2", "x3", "y"], [root, root, root, outcome], 1, 3, linear=True)


ZOO: dict[str, Callable[[], ZooSCM]] = {
    **{f"{s}_{v}": (lambda s=s, v=v: _generic(s, v)) for s in _GRAPHS for v in VARIANTS},
    "nonlin_simpson": nonlin_simpson,
    "symprod_simpson": symprod_simpson,
    "toy": toy,
}


def get_scm(name: str) -> ZooSCM:
    """The zoo SCM called `name` (a UserError listing the names otherwise)."""
    if name not in ZOO:
        raise UserError(f"data.scm={name!r} is not in the zoo; choose one of: {', '.join(sorted(ZOO))}")
    return ZOO[name]()
