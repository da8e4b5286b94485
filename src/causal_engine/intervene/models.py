"""Networks that answer do-queries: the structural `StructuralMLP` and the outcome regressors (`OutcomeMLP`).

Both work in standardised units inside (`loc`/`scale` buffers set from the training rows) and take and
return variables in the data's own units. Both expose the same three methods the LightningModule uses:
`fit_terms` (what the loss compares), `counterfactual` (unit-level answers) and `interventional`
(samples of all variables under an intervention, noise abducted from reference rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from causal_engine.graphs import descendants, reachability
from causal_engine.intervene.causal_mlp import CausalMLP
from causal_engine.intervene.dag import DAGRewiring
from causal_engine.intervene.do import CausalUnit, Interventions

_ACTIVATIONS = {"silu": nn.functional.silu, "relu": nn.functional.relu, "tanh": torch.tanh}


class NodeMLPs(nn.Module):
    """D independent MLPs, one per node, evaluated together with batched einsums.

    Node j's first layer sees every variable multiplied by its input mask column (its parents), so the
    graph lives in the mask, not in D separate modules.
    """

    def __init__(self, num_nodes: int, hidden_dims: Sequence[int] = (32, 32), activation: str = "silu") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.activation = _ACTIVATIONS[activation]
        dims = [num_nodes, *hidden_dims, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in pairwise(dims):
            bound = 1.0 / math.sqrt(d_in)
            self.weights.append(nn.Parameter(torch.empty(num_nodes, d_in, d_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_nodes, d_out).uniform_(-bound, bound)))

    def forward(self, z: Tensor, input_mask: Tensor, nodes: Sequence[int] | None = None) -> Tensor:
        """z [B, D], input_mask [D, D] or [B, D, D] (parent i -> child j) -> outputs [B, len(nodes)].

        `nodes` restricts the computation to some nodes (one topological generation at a time).
        """
        idx = slice(None) if nodes is None else torch.as_tensor(list(nodes), device=z.device)
        mask = input_mask[..., idx]  # [(B,) D, K]
        w0, b0 = self.weights[0][idx], self.biases[0][idx]  # [K, D, H], [K, H]
        if mask.dim() == 2:
            h = torch.einsum("bi,ik,kih->bkh", z, mask, w0) + b0  # [B, K, H]
        else:
            h = torch.einsum("bi,bik,kih->bkh", z, mask, w0) + b0
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            h = torch.einsum("bkh,kho->bko", self.activation(h), w[idx]) + b[idx]
        return h.squeeze(-1)  # [B, K]


class _Standardised(nn.Module):
    """loc/scale buffers shared by both networks (set from training rows before fitting)."""

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(num_nodes))
        self.register_buffer("scale", torch.ones(num_nodes))

    def set_scaler(self, loc: Tensor, scale: Tensor) -> None:
        self.loc.copy_(torch.as_tensor(loc, dtype=self.loc.dtype))
        self.scale.copy_(torch.as_tensor(scale, dtype=self.scale.dtype).clamp_min(1e-6))

    def standardise(self, x: Tensor) -> Tensor:
        return (x - self.loc) / self.scale


class StructuralMLP(_Standardised):
    """One small network per node, fed by its parents through the (masked) adjacency; additive noise.

    x_j = loc_j + scale_j · (f_j(z_pa(j)) + u_j) with z the standardised variables. Abduction recovers
    u = z − f(z_pa) exactly, so counterfactuals are "keep each unit's noise, change the intervened
    mechanisms, recompute the descendants" and the null intervention reproduces the factual.

    API: `model(x, interventions)` one-step interventional predictions from each unit's parents;
    `model.do({"x1": 0.5}, n=1000)` interventional samples; `model.counterfactual(x, {"x1": {"shift": 1}})`.
    """

    def __init__(
        self,
        adjacency: Tensor | np.ndarray,
        names: Sequence[str] | None = None,
        hidden_dims: Sequence[int] = (32, 32),
        activation: str = "silu",
        learnable_graph: bool = False,
        record_history: bool = False,
        max_history: int = 1000,
    ) -> None:
        num_nodes = len(adjacency)
        super().__init__(num_nodes)
        self.names = list(names) if names is not None else [f"x{j}" for j in range(num_nodes)]
        if len(self.names) != num_nodes:
            raise ValueError(f"{len(self.names)} names for {num_nodes} nodes")
        self.dag = DAGRewiring(adjacency, learnable=learnable_graph)
        self.mechanisms = NodeMLPs(num_nodes, hidden_dims, activation)
        self.unit = CausalUnit(record_history, max_history)
        # Abducted training residuals (standardised) for sampling without reference rows; not checkpointed,
        # set again from data by whoever samples (`set_noise_pool`).
        self.register_buffer("noise_pool", torch.zeros(0, num_nodes), persistent=False)

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The intervention records (see `CausalUnit`), oldest first; `units` are node indices."""
        return list(self.unit.history)

    def _interventions(self, spec: Interventions | Mapping | None) -> Interventions:
        return Interventions.parse(spec, self.names)

    def fit_terms(self, x: Tensor, cut: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(prediction, target, cut), all [B, D] standardised: each node from its observed parents.

        Edges into cut nodes are masked and their rows are excluded by the loss (their conditional is
        not the mechanism's on those rows).
        """
        z = self.standardise(x)
        return self.mechanisms(z, self.dag.masked(cut)), z, cut

    def forward(self, x: Tensor, interventions: Interventions | Mapping | None = None) -> Tensor:
        """One-step interventional prediction [B, D]: each node's mean given the unit's own parent
        values, with intervened nodes replaced (hard) or shifted (shift)."""
        iv = self._interventions(interventions)
        self.unit.step += 1
        z_pred = self.mechanisms(self.standardise(x), self.dag.masked(iv.cut_mask(len(x), x.device)))
        natural = self.loc + self.scale * z_pred  # [B, D]
        cols = [self.unit.apply(natural[:, j], j, x, iv) for j in range(self.num_nodes)]
        return torch.stack(cols, 1)

    def _pass_mask(self, cut: Tensor | None = None) -> Tensor:
        """Edge weights for abduction and rollout. A learnable graph keeps only the edges its topological
        generations count (p > 0.5), so a rollout never reads a node that is not computed yet and abduction
        inverts exactly that pass."""
        mask = self.dag.masked(cut)
        return mask * (mask.detach() > 0.5) if self.dag.learnable else mask

    def abduct(self, x: Tensor) -> Tensor:
        """Standardised additive noise u [B, D] with x = loc + scale · (f(z_pa) + u)."""
        z = self.standardise(x)
        return z - self.mechanisms(z, self._pass_mask())

    def rollout(
        self, noise: Tensor, interventions: Interventions | Mapping | None = None, factual: Tensor | None = None
    ) -> Tensor:
        """Ancestral pass: noise u [B, D] (standardised) -> variables x [B, D] under the interventions.

        With `factual` [B, D], entries that no intervention reaches (not intervened, not a descendant of an
        intervened node in that row) are copied from it, so they are bit-exact rather than re-computed.
        """
        iv = self._interventions(interventions)
        self.unit.step += 1
        batch = noise.shape[0]
        mask = self._pass_mask(iv.cut_mask(batch, noise.device))
        if factual is not None:
            reach = reachability(self.dag.adjacency().detach() > 0.5).to(noise.dtype)  # [D, D]
            affected = (iv.touched_mask(batch, noise.device).to(noise.dtype) @ reach) > 0  # [B, D]
        cols: list[Tensor] = [noise.new_zeros(batch)] * self.num_nodes
        for generation in self.dag.generations():
            x = torch.stack(cols, 1)  # [B, D]; only earlier generations are filled, later ones are masked out
            f = self.mechanisms(self.standardise(x), mask, generation)  # [B, K]
            for k, j in enumerate(generation):
                natural = self.loc[j] + self.scale[j] * (f[:, k] + noise[:, j])
                value = self.unit.apply(natural, j, x, iv)
                cols[j] = value if factual is None else torch.where(affected[:, j], value, factual[:, j])
        return torch.stack(cols, 1)

    def counterfactual(self, x: Tensor, interventions: Interventions | Mapping | None = None) -> Tensor:
        """Unit-level counterfactuals [B, D]: abduct each row's noise, intervene, recompute descendants."""
        return self.rollout(self.abduct(x), interventions, factual=x)

    def set_noise_pool(self, x: Tensor) -> None:
        """Store abducted residuals of (observational) rows x [N, D] for `do(..., n=...)` sampling."""
        with torch.no_grad():
            self.noise_pool = self.abduct(x.to(self.loc.device))

    def interventional(self, x_ref: Tensor, interventions: Interventions | Mapping | None) -> Tensor:
        """Samples [N, D] from the interventional distribution, one per reference row (its noise kept)."""
        return self.counterfactual(x_ref, interventions)

    def do(
        self,
        interventions: Interventions | Mapping,
        n: int = 1000,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n samples [n, D] under the interventions, each node's noise resampled independently from the
        abducted pool (independent noises are the SCM assumption). Call `set_noise_pool` first."""
        if len(self.noise_pool) == 0:
            raise RuntimeError("no noise pool: call model.set_noise_pool(x_observational) before model.do(...)")
        idx = torch.randint(len(self.noise_pool), (n, self.num_nodes), generator=generator)
        noise = torch.gather(self.noise_pool, 0, idx.to(self.noise_pool.device))  # [n, D]
        return self.rollout(noise, interventions)


class OutcomeNet(_Standardised):
    """A regressor of one outcome on a set of other variables, do(X = v) by substituting the network's input X.

    `features="all"` (M1, the substitution MLP): every other variable, so descendants of the treatment sit
    among the inputs and substituting X = v leaves them at their factual values (biased at any N).
    `features="nondescendants"`: the treatment and its non-descendants (M2, the fair back-door baseline).
    Its counterfactual changes only the intervened inputs and the outcome: y' = y + f(x') − f(x).
    Subclasses supply the network through `_forward`.
    """

    def __init__(
        self,
        adjacency: Tensor | np.ndarray,
        treatment: int,
        outcome: int,
        features: Literal["all", "nondescendants"] = "all",
        names: Sequence[str] | None = None,
    ) -> None:
        num_nodes = len(adjacency)
        super().__init__(num_nodes)
        self.names = list(names) if names is not None else [f"x{j}" for j in range(num_nodes)]
        if features == "all":
            inputs = [j for j in range(num_nodes) if j != outcome]
        elif features == "nondescendants":
            excluded = set(descendants(adjacency)[treatment].nonzero().flatten().tolist()) | {outcome}
            inputs = [j for j in range(num_nodes) if j not in excluded]
        else:
            raise ValueError(f"features must be 'all' or 'nondescendants', got {features!r}")
        self.outcome = outcome
        self.register_buffer("inputs", torch.tensor(inputs, dtype=torch.long), persistent=False)
        self.unit = CausalUnit()  # resolves an `Interventions` set to the new values of the variables

    def _forward(self, z: Tensor, do: tuple[Tensor, Tensor] | None) -> Tensor:
        """The network on standardised inputs z [B, I], with do = (mask, values) [B, I] at its input -> [B, 1]."""
        raise NotImplementedError

    def predict(self, x: Tensor, touched: Tensor | None = None) -> Tensor:
        """Standardised outcome prediction [B] from the inputs of x [B, D]; the entries in `touched` [B, D]
        bool were set by an intervention and enter through the network's input do-operator."""
        z = self.standardise(x)[:, self.inputs]  # [B, I]
        do = None if touched is None or not touched.any() else (touched[:, self.inputs], z)
        return self._forward(z, do).squeeze(-1)

    def fit_terms(self, x: Tensor, cut: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(prediction, target, cut) [B, 1] standardised: the outcome only (rows where it is cut excluded)."""
        o = self.outcome
        return self.predict(x, cut)[:, None], self.standardise(x)[:, o : o + 1], cut[:, o : o + 1]

    def counterfactual(self, x: Tensor, interventions: Interventions | Mapping | None = None) -> Tensor:
        """Substitute the intervened inputs and move the outcome by f(x') − f(x); nothing else changes."""
        iv = Interventions.parse(interventions, self.names)
        x_new = torch.stack([self.unit.apply(x[:, j], j, x, iv) for j in range(x.shape[1])], 1)
        touched = iv.touched_mask(len(x), x.device)  # [B, D]
        shift = self.scale[self.outcome] * (self.predict(x_new, touched) - self.predict(x))
        return torch.cat(
            [x_new[:, : self.outcome], (x[:, self.outcome] + shift)[:, None], x_new[:, self.outcome + 1 :]], 1
        )

    def interventional(self, x_ref: Tensor, interventions: Interventions | Mapping | None) -> Tensor:
        """Samples [N, D]: the reference rows' counterfactuals (residuals kept), as for StructuralMLP."""
        return self.counterfactual(x_ref, interventions)


class OutcomeMLP(OutcomeNet):
    """The M1/M2 baselines as a `CausalMLP`: do(X = v) is its layer-0 intervention on the input X.
    See `OutcomeNet` for `features`."""

    def __init__(
        self,
        adjacency: Tensor | np.ndarray,
        treatment: int,
        outcome: int,
        features: Literal["all", "nondescendants"] = "all",
        names: Sequence[str] | None = None,
        hidden_dims: Sequence[int] = (32, 32),
        activation: str = "silu",
        record_history: bool = False,
        max_history: int = 1000,
    ) -> None:
        super().__init__(adjacency, treatment, outcome, features, names)
        self.net = CausalMLP(len(self.inputs), hidden_dims, 1, activation, record_history, max_history)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The network's layer-0 intervention records (see `CausalUnit`); `units` index `inputs`."""
        return self.net.history

    def _forward(self, z: Tensor, do: tuple[Tensor, Tensor] | None) -> Tensor:
        return self.net(z, None if do is None else {0: do})
