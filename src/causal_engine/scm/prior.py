"""The PFN prior: one call draws B SCMs and everything a causal PFN trains on from them.

It reproduces the seed notebook's configuration (observational rows, ``ceil(fraction · d)`` single-node targets,
each forced to each of the intervention values with fresh noise, 100 samples per regime) in one batched
simulation, where each regime target's samples are one contiguous block that its step overwrites. It also fixes
the seed's query target: the seed paired an interventional row with a *random* observational row, so its "delta"
mixed two noise draws; here ``delta`` is the true counterfactual change of the same unit (same exogenous noise),
a deterministic function of the factual row and the SCM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from causal_engine.errors import UserError
from causal_engine.graphs import reachable
from causal_engine.scm.families import (
    MECHANISM_FAMILIES,
    NOISE_FAMILIES,
    NOISE_SAMPLERS,
    BroadIntervene,
    BroadSCM,
    draw_mechanism_params,
    parent_slots,
    signed_log_uniform,
    simulate_broad,
)
from causal_engine.scm.graphs import GRAPH_TYPES, check_generator, check_positive_int, sample_dags_and_order
from causal_engine.scm.mechanisms import MECHANISMS, NO_EDGE
from causal_engine.scm.model import sample_scm, simulate_node_major


@dataclass
class PriorBatch:
    """B graphs on d nodes with observational, interventional and counterfactual-query data (shapes below).

    adjacency:      [B, d, d] float {0, 1}; ``adjacency[b, i, j] = 1`` iff i -> j.
    mechanisms:     [B, d, d] long index into ``MECHANISMS``, -1 where there is no edge.
    observational:  [B, S_obs, d].
    interventional: [B, R, S_int, d]; regime r is ``do(regime_targets[b, r] = regime_values[b, r])``.
    regime_targets: [B, R, d] bool, which nodes regime r intervenes on.
    regime_values:  [B, R, d] float, the do-values (0 where not a target).
    regime_mask:    [B, R] bool, False for padding regimes (all True here; a DataModule that pads graphs of
                    different sizes to one R sets the padding False). R may be 0 (observational only).
    query:          [B, Q, d] factual rows, observational, drawn with their own noise.
    query_targets:  [B, Q, d] bool, the intervention asked about for each query row (one node).
    query_values:   [B, Q, d] float, its value (0 elsewhere).
    delta:          [B, Q, d] ``x_cf - x_factual`` under (query_targets, query_values) with the SAME noise:
                    exactly 0 on non-descendants of the target, ``value - x`` on the target itself.
    """

    adjacency: Tensor
    mechanisms: Tensor
    observational: Tensor
    interventional: Tensor
    regime_targets: Tensor
    regime_values: Tensor
    regime_mask: Tensor
    query: Tensor
    query_targets: Tensor
    query_values: Tensor
    delta: Tensor


def num_intervention_targets(num_nodes: int, intervention_fraction: float) -> int:
    """``ceil(fraction · d)`` intervened nodes per graph (the seed's rule), robust to float noise such as
    ``0.3 · 10 = 3.0000000000000004``."""
    if not 0.0 <= float(intervention_fraction) <= 1.0:
        raise ValueError(f"intervention_fraction must lie in [0, 1], got {intervention_fraction!r}")
    return math.ceil(round(float(intervention_fraction) * num_nodes, 9))


def sample_batch(
    batch: int,
    num_nodes: int,
    *,
    graph: str = "er",
    expected_parents: float | None = 2.0,
    edge_prob: float | None = None,
    noise_scale: float = 1.0,
    num_obs: int = 100,
    num_int_per_regime: int = 100,
    intervention_fraction: float = 0.5,
    intervention_values: Sequence[float] = (5.0, 8.0, 10.0),
    num_queries: int = 1,
    mechanisms: Sequence[str] = MECHANISMS,
    generator: torch.Generator,
) -> PriorBatch:
    """Draw B SCMs (``sample_scm`` options) and their data; R = ``ceil(fraction · d) · len(values)`` regimes.

    Regimes are target-major (the seed's loop order): target 1 at each value, then target 2, ... . Each query
    row's target is one node drawn uniformly from that graph's intervened targets (any node when R = 0) and its
    value uniformly from ``intervention_values``. All samples of the batch come out of one simulation.
    """
    num_obs = check_positive_int("num_obs", num_obs)
    num_int = check_positive_int("num_int_per_regime", num_int_per_regime)
    if isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 0:
        raise ValueError(f"num_queries must be an integer >= 0, got {num_queries!r}")
    values = torch.as_tensor(list(intervention_values), dtype=torch.float32)
    if values.dim() != 1 or values.numel() == 0 or not torch.isfinite(values).all():
        raise ValueError(f"intervention_values must be a non-empty list of finite numbers, got {intervention_values!r}")
    scm = sample_scm(
        batch,
        num_nodes,
        graph=graph,
        expected_parents=expected_parents,
        edge_prob=edge_prob,
        noise_scale=noise_scale,
        mechanisms=mechanisms,
        generator=generator,
    )
    device = generator.device
    values = values.to(device)
    d, num_values = num_nodes, values.numel()
    num_targets = num_intervention_targets(d, intervention_fraction)
    num_regimes = num_targets * num_values

    # regimes: a random subset of nodes per graph, each at every value
    chosen = torch.rand(batch, d, generator=generator, device=device).argsort(-1)[:, :num_targets]  # [B, T]
    regime_node = chosen.repeat_interleave(num_values, dim=1)  # [B, R]
    regime_targets = torch.nn.functional.one_hot(regime_node, d).bool()  # [B, R, d]
    regime_values = regime_targets * values.repeat(num_targets)[None, :, None]  # [B, R, d]

    # queries: one target per row among the intervened nodes (any node when there are none)
    pool = chosen if num_targets else torch.arange(d, device=device).expand(batch, d)  # [B, T or d]
    pick = torch.randint(pool.shape[1], (batch, num_queries), generator=generator, device=device)
    query_node = pool.gather(1, pick)  # [B, Q]
    query_value = values[torch.randint(num_values, (batch, num_queries), generator=generator, device=device)]
    query_targets = torch.nn.functional.one_hot(query_node, d).bool()  # [B, Q, d]
    query_values = query_targets * query_value[..., None]  # [B, Q, d]

    # one simulation: samples [obs | regime 1 .. R | query factual | query counterfactual (same noise)]
    num_int_rows = num_regimes * num_int
    num_fresh = num_obs + num_int_rows + num_queries  # samples with their own noise
    eps = torch.randn(batch, d, num_fresh + num_queries, generator=generator, device=device)  # node-major
    eps[..., num_fresh:] = eps[..., num_fresh - num_queries : num_fresh]  # one buffer, no concatenation
    eps.mul_(scm.noise_scale[:, :, None])

    # Interventions cost O(hits), not O(samples) per step: a regime target's V · S_int samples are one contiguous
    # block (regimes are target-major), so the step that computes a target overwrites its block with the values.
    position = scm.order.argsort(-1)  # [B, d] node -> topological position
    slot = torch.full((batch, d), -1, device=device)  # [B, d]: target slot of the node at each position, or -1
    slot.scatter_(1, position.gather(1, chosen), torch.arange(num_targets, device=device).expand(batch, -1))
    query_step = position.gather(1, query_node)  # [B, Q]
    block_values = values.repeat_interleave(num_int)  # [V · S_int] one target's samples, value-major
    regime_rows = slice(num_obs, num_obs + num_int_rows)
    cf_rows = slice(num_fresh, num_fresh + num_queries)

    def intervene(graphs: slice, step: int, node: Tensor, value: Tensor) -> Tensor:  # value [b, S], in place
        slots = slot[graphs, step]  # [b]
        hit = (slots >= 0).nonzero().squeeze(1)
        if hit.numel():
            blocks = value[:, regime_rows].view(-1, num_targets, num_values * num_int)  # [b, T, V · S_int]
            blocks[hit, slots[hit]] = block_values
        if num_queries:
            asked = query_step[graphs] == step  # [b, Q]
            value[:, cf_rows] = torch.where(asked, query_value[graphs], value[:, cf_rows])
        return value

    x = simulate_node_major(scm, eps, intervene)  # [B, d, S]
    # The factual and counterfactual query rows sit at different sample positions, where a vectorised kernel and
    # its scalar tail may round sin/exp/... differently in the last bit; off the target's descendants the delta
    # is exactly 0 by definition, so say so instead of trusting the rounding.
    affected = reachable(scm.adjacency, scm.order, query_targets)  # [B, Q, d]
    observational, interventional, factual, cf = (
        part.transpose(1, 2).contiguous() for part in x.split([num_obs, num_int_rows, num_queries, num_queries], dim=2)
    )
    return PriorBatch(
        adjacency=scm.adjacency,
        mechanisms=scm.mechanisms,
        observational=observational,
        interventional=interventional.reshape(batch, num_regimes, num_int, d),
        regime_targets=regime_targets,
        regime_values=regime_values,
        regime_mask=torch.ones(batch, num_regimes, dtype=torch.bool, device=device),
        query=factual,
        query_targets=query_targets,
        query_values=query_values,
        delta=torch.where(affected, cf - factual, torch.zeros_like(cf)),
    )


class PriorError(UserError):
    """A prior setting (``data.prior.*``) is invalid; the message names the field and what is allowed."""


def _check_mix(name: str, mix: Mapping[str, float], allowed: Sequence[str]) -> dict[str, float]:
    """Validate a {option: weight} mix and normalise it to shares that sum to 1."""
    mix = dict(mix)
    unknown = sorted(set(mix) - set(allowed))
    if unknown or not mix:
        raise PriorError(
            f"data.prior.{name}: options must be a non-empty subset of {list(allowed)}; unknown: {unknown}"
        )
    if any(not math.isfinite(float(w)) or float(w) < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise PriorError(f"data.prior.{name}: weights must be finite, >= 0 and not all 0, got {mix}")
    total = float(sum(mix.values()))
    return {k: float(w) / total for k, w in mix.items()}


def _check_range(name: str, value: Sequence[float], low: float, integer: bool = False) -> tuple[float, float]:
    if len(value) != 2 or float(value[0]) > float(value[1]) or float(value[0]) < low:
        raise PriorError(f"data.prior.{name}: give [min, max] with {low} <= min <= max, got {list(value)}")
    if integer and any(float(v) != int(v) for v in value):
        raise PriorError(f"data.prior.{name}: give whole numbers, got {list(value)}")
    return float(value[0]), float(value[1])


def _check_share(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise PriorError(f"data.prior.{name} must lie in [0, 1], got {value!r}")
    return float(value)


def _draw(mix: Mapping[str, float], n: int, generator: torch.Generator) -> Tensor:
    """n iid indices into ``list(mix)`` with probabilities ``mix.values()``: [n] long."""
    probs = torch.tensor(list(mix.values()), device=generator.device)
    return torch.multinomial(probs, n, replacement=True, generator=generator)


def _between(low: float, high: float, generator: torch.Generator, shape: tuple[int, ...] = ()) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


@dataclass(frozen=True)
class SeedPrior:
    """The seed notebook's narrow prior: ``sample_batch`` with these arguments (the ten mechanisms, Gaussian noise,
    ER or scale-free graphs, hard single-node interventions at fixed values). ``obs_only_share`` of the graphs
    have their regimes hidden (``regime_mask`` False); with 0 no coin is drawn, so fixed sets stay identical."""

    graph: str = "er"
    expected_parents: float | None = 2.0
    edge_prob: float | None = None
    noise_scale: float = 1.0
    num_obs: int = 100
    num_int_per_regime: int = 50
    intervention_fraction: float = 0.5
    intervention_values: Sequence[float] = (5.0, 8.0, 10.0)
    num_queries: int = 2
    obs_only_share: float = 0.0

    def __post_init__(self) -> None:
        _check_share("obs_only_share", self.obs_only_share)
        object.__setattr__(self, "intervention_values", tuple(float(v) for v in self.intervention_values))

    def draw_num_obs(self, generator: torch.Generator) -> int:
        return self.num_obs

    def sample(
        self, batch: int, num_nodes: int, *, generator: torch.Generator, num_obs: int | None = None
    ) -> PriorBatch:
        kwargs = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "obs_only_share"}
        prior = sample_batch(batch, num_nodes, generator=generator, **{**kwargs, "num_obs": num_obs or self.num_obs})
        if self.obs_only_share > 0:
            hide = torch.rand(batch, generator=generator, device=generator.device) < self.obs_only_share
            prior.regime_mask &= ~hide[:, None]
        return prior


@dataclass(frozen=True)
class BroadPrior:
    """A broad prior over SCMs and experiments, mixed per graph (see ``families`` for the equations).

    Per graph: a mechanism family (``mechanisms``, {family: weight}), a noise family (``noises``), a graph
    family (``graphs``: er, sf, sw), heteroscedastic noise with probability ``hetero_share``, soft (shift)
    instead of hard interventions with probability ``soft_share``, observational data only with probability
    ``obs_only_share``. Per node: noise sd log-uniform in ``noise_scale``, parents' signal sd uniform in
    ``signal``; per edge: a weight log-uniform in ``weight`` with a random sign (weak edges included). Per call
    (one graph size): ``num_obs`` observational rows (uniform in the range, unless the caller fixes it),
    ``num_int_per_regime`` rows per regime, ``ceil(f d)`` regimes with f uniform in ``intervention_fraction``,
    each on one node, or on 2-3 nodes with probability ``multi_target_share``; mean parents per node uniform
    in ``expected_parents``.

    Do-values are in the node's own observational units: ``mean + z * sd`` with |z| uniform in
    ``intervention_z`` and a random sign (a soft regime adds ``z * sd`` to the node's structural value, keeping
    its parents). ``regime_values`` reports the regime's realised mean of each target (what ``task=discover``
    computes from a user's table); queries ask ``do(node = mean + z sd)`` for a uniformly drawn node, and
    ``delta`` is the exact counterfactual change of the same unit.
    """

    mechanisms: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(MECHANISM_FAMILIES, 1.0))
    noises: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(NOISE_FAMILIES, 1.0))
    graphs: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(GRAPH_TYPES, 1.0))
    expected_parents: Sequence[float] = (1.0, 3.0)
    weight: Sequence[float] = (0.1, 2.0)
    noise_scale: Sequence[float] = (0.05, 1.0)
    signal: Sequence[float] = (0.5, 1.5)
    hetero_share: float = 0.3
    num_obs: Sequence[int] = (50, 2000)
    num_int_per_regime: Sequence[int] = (20, 100)
    intervention_fraction: Sequence[float] = (0.2, 0.6)
    intervention_z: Sequence[float] = (1.0, 3.0)
    multi_target_share: float = 0.3
    soft_share: float = 0.3
    obs_only_share: float = 0.3
    num_queries: int = 2

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "mechanisms", _check_mix("mechanisms", self.mechanisms, MECHANISM_FAMILIES))
        set_(self, "noises", _check_mix("noises", self.noises, NOISE_FAMILIES))
        set_(self, "graphs", _check_mix("graphs", self.graphs, GRAPH_TYPES))
        set_(self, "expected_parents", _check_range("expected_parents", self.expected_parents, 0.0))
        set_(self, "weight", _check_range("weight", self.weight, 1e-6))
        set_(self, "noise_scale", _check_range("noise_scale", self.noise_scale, 1e-6))
        set_(self, "signal", _check_range("signal", self.signal, 0.0))
        set_(self, "num_obs", tuple(map(int, _check_range("num_obs", self.num_obs, 2, integer=True))))
        set_(
            self,
            "num_int_per_regime",
            tuple(map(int, _check_range("num_int_per_regime", self.num_int_per_regime, 2, integer=True))),
        )
        set_(self, "intervention_fraction", _check_range("intervention_fraction", self.intervention_fraction, 0.0))
        if self.intervention_fraction[1] > 1:
            raise PriorError(
                f"data.prior.intervention_fraction: max must be <= 1, got {list(self.intervention_fraction)}"
            )
        set_(self, "intervention_z", _check_range("intervention_z", self.intervention_z, 0.0))
        for name in ("hetero_share", "multi_target_share", "soft_share", "obs_only_share"):
            set_(self, name, _check_share(name, getattr(self, name)))
        if isinstance(self.num_queries, bool) or not isinstance(self.num_queries, int) or self.num_queries < 0:
            raise PriorError(f"data.prior.num_queries must be an integer >= 0, got {self.num_queries!r}")

    def draw_num_obs(self, generator: torch.Generator) -> int:
        low, high = self.num_obs
        return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device))

    def sample(
        self, batch: int, num_nodes: int, *, generator: torch.Generator, num_obs: int | None = None
    ) -> PriorBatch:
        return self.sample_with_truth(batch, num_nodes, generator=generator, num_obs=num_obs)[0]

    def sample_with_truth(
        self, batch: int, num_nodes: int, *, generator: torch.Generator, num_obs: int | None = None
    ) -> tuple[PriorBatch, list[BroadSCM], Tensor]:
        """The batch, each mechanism family's SCMs (in batch order: the graphs are grouped by family) and the
        per-graph noise family index [B] into ``list(self.noises)``."""
        batch = check_positive_int("batch", batch)
        d = check_positive_int("num_nodes", num_nodes)
        generator = check_generator(generator)
        device = generator.device
        n_obs = check_positive_int("num_obs", num_obs or self.draw_num_obs(generator))
        n_int = int(
            torch.randint(self.num_int_per_regime[0], self.num_int_per_regime[1] + 1, (1,), generator=generator)
        )
        frac = float(_between(*self.intervention_fraction, generator))
        num_regimes = num_intervention_targets(d, frac) if frac > 0 else 0
        q = self.num_queries

        # per graph: families (the batch is sorted by mechanism family so each family simulates as one block)
        family = _draw(self.mechanisms, batch, generator).sort().values  # [B]
        noise = _draw(self.noises, batch, generator)  # [B]
        graph_kind = _draw(self.graphs, batch, generator)  # [B]
        adjacency = torch.zeros(batch, d, d, device=device)
        order = torch.zeros(batch, d, dtype=torch.long, device=device)
        for g, name in enumerate(self.graphs):
            idx = (graph_kind == g).nonzero().squeeze(1)
            if idx.numel():
                parents = float(_between(*self.expected_parents, generator))
                adjacency[idx], order[idx] = sample_dags_and_order(
                    idx.numel(), d, graph=name, expected_parents=parents, generator=generator
                )
        hetero = (torch.rand(batch, generator=generator, device=device) < self.hetero_share).float()
        hetero = hetero[:, None] * _between(0.5, 2.0, generator, (batch, d))  # [B, d]
        soft = torch.rand(batch, generator=generator, device=device) < self.soft_share  # [B]
        obs_only = torch.rand(batch, generator=generator, device=device) < self.obs_only_share  # [B]

        # regimes: regime r targets a distinct first node, plus 1-2 more when multi-target
        first = torch.rand(batch, d, generator=generator, device=device).argsort(-1)[:, :num_regimes]  # [B, R]
        multi = torch.rand(batch, num_regimes, generator=generator, device=device) < self.multi_target_share
        extra = torch.randint(2, 4, (batch, num_regimes), generator=generator, device=device)
        size = torch.where(multi, extra, torch.ones_like(extra)).clamp(max=d)  # [B, R] targets per regime
        keys = torch.rand(batch, num_regimes, d, generator=generator, device=device)
        keys.scatter_(2, first[..., None], 2.0)  # the first target sorts first
        rank = keys.argsort(-1, descending=True).argsort(-1)  # [B, R, d]
        regime_targets = rank < size[..., None]  # [B, R, d]
        regime_z = _signed(self.intervention_z, generator, (batch, num_regimes, d)) * regime_targets

        # queries: one node each, any node
        query_node = torch.randint(d, (batch, q), generator=generator, device=device)  # [B, Q]
        query_z = _signed(self.intervention_z, generator, (batch, q))  # [B, Q]

        # noise: one buffer [obs | regimes | query factual | query counterfactual (same noise)], node-major
        n_reg_rows = num_regimes * n_int
        n_fresh = n_obs + n_reg_rows + q
        eps = torch.empty(batch, d, n_fresh + q, device=device)
        for k, sampler in enumerate(NOISE_SAMPLERS[name] for name in self.noises):
            idx = (noise == k).nonzero().squeeze(1)
            if idx.numel():
                # beyond 10 sd a draw (a Student-t tail) only adds one absurd row to a table
                eps[idx, :, :n_fresh] = sampler((idx.numel(), d, n_fresh), generator).clamp_(-10.0, 10.0)
        eps[..., n_fresh:] = eps[..., n_fresh - q : n_fresh]
        query_values = torch.zeros(batch, q, device=device)
        x = torch.empty_like(eps)
        scms: list[BroadSCM] = []
        families = list(self.mechanisms)
        for k in range(len(families)):
            idx = (family == k).nonzero().squeeze(1)
            if not idx.numel():
                continue
            block = slice(int(idx[0]), int(idx[-1]) + 1)
            scm = self._draw_scm(families[k], adjacency[block], order[block], hetero[block], generator)
            intervene = _broad_intervene(
                n_obs,
                n_int,
                regime_targets[block],
                regime_z[block],
                soft[block],
                query_node[block],
                query_z[block],
                query_values[block],
                n_fresh,
            )
            x[block] = simulate_broad(scm, eps[block], n_obs, intervene)
            scms.append(scm)

        query_targets = torch.nn.functional.one_hot(query_node, d).bool()  # [B, Q, d]
        affected = reachable(adjacency, order, query_targets)  # [B, Q, d]
        observational, interventional, factual, cf = (
            part.transpose(1, 2).contiguous() for part in x.split([n_obs, n_reg_rows, q, q], dim=2)
        )
        interventional = interventional.reshape(batch, num_regimes, n_int, d)
        regime_values = interventional.mean(2) * regime_targets  # [B, R, d] realised means of the targets
        prior = PriorBatch(
            adjacency=adjacency,
            mechanisms=torch.cat([_edge_kinds(scm) for scm in scms]),
            observational=observational,
            interventional=interventional,
            regime_targets=regime_targets,
            regime_values=regime_values,
            regime_mask=(~obs_only)[:, None].expand(batch, num_regimes).clone(),
            query=factual,
            query_targets=query_targets,
            query_values=query_targets * query_values[..., None],
            delta=torch.where(affected, cf - factual, torch.zeros_like(cf)),
        )
        return prior, scms, noise

    def _draw_scm(
        self, family: str, adjacency: Tensor, order: Tensor, hetero: Tensor, generator: torch.Generator
    ) -> BroadSCM:
        """One family's SCMs on given graphs: parent slots, edge weights, per-node scales and parameters."""
        batch, d, _ = adjacency.shape
        parents, valid = parent_slots(adjacency)
        weights = signed_log_uniform(tuple(parents.shape), *self.weight, generator) * valid
        low, high = self.noise_scale
        noise_scale = torch.exp(_between(math.log(low), math.log(high), generator, (batch, d)))
        return BroadSCM(
            family=family,
            adjacency=adjacency,
            order=order,
            parents=parents,
            valid=valid,
            params=draw_mechanism_params(family, batch, d, parents.shape[-1], weights, generator),
            noise_scale=noise_scale,
            hetero=hetero,
            signal=_between(*self.signal, generator, (batch, d)),
            rescale=family != "notebook",
        )


def _signed(magnitude: Sequence[float], generator: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    """Uniform magnitudes in [low, high] with a random sign."""
    sign = torch.randint(2, shape, generator=generator, device=generator.device) * 2 - 1
    return _between(*magnitude, generator, shape) * sign


def _edge_kinds(scm: BroadSCM) -> Tensor:
    """``PriorBatch.mechanisms`` of one family: the seed-mechanism index of each edge for "notebook" graphs,
    ``NO_EDGE`` everywhere for the other families (their edges are not one of the ten functions)."""
    kinds = torch.full(
        scm.adjacency.shape, NO_EDGE, dtype=torch.long, device=scm.adjacency.device
    )  # [B, child, parent]
    if scm.family == "notebook":  # topk slots are distinct nodes, so the scatter never collides
        kinds.scatter_(2, scm.parents, torch.where(scm.valid, scm.params["kind"], NO_EDGE))
    return kinds.transpose(1, 2).contiguous()  # [B, parent, child]


def _broad_intervene(
    num_obs: int,
    num_int: int,
    regime_targets: Tensor,
    regime_z: Tensor,
    soft: Tensor,
    query_node: Tensor,
    query_z: Tensor,
    query_values: Tensor,
    cf_start: int,
) -> BroadIntervene:
    """The per-step interventions of ``BroadPrior``: regime blocks (hard: set to ``mean + z sd``; soft: add
    ``z sd``) and the counterfactual query rows (hard), in the node's observational units. Writes each
    query's do-value into ``query_values [B, Q]``."""
    batch, num_regimes, _ = regime_targets.shape
    rows = torch.arange(batch, device=regime_targets.device)
    regime_rows = slice(num_obs, num_obs + num_regimes * num_int)
    cf_rows = slice(cf_start, cf_start + query_node.shape[1])

    def intervene(step: int, node: Tensor, value: Tensor) -> Tensor:  # value [B, S]
        ref = value[:, :num_obs]
        mean, sd = ref.mean(1, keepdim=True), ref.std(1, keepdim=True).nan_to_num(1.0)  # [B, 1]
        value = value.clone()
        if num_regimes:
            hit = regime_targets[rows, :, node]  # [B, R]
            z = regime_z[rows, :, node]  # [B, R]
            blocks = value[:, regime_rows].view(batch, num_regimes, num_int)
            hard = (hit & ~soft[:, None])[..., None]
            shift = (z * sd * (hit & soft[:, None]))[..., None]
            blocks.copy_(torch.where(hard, (mean + z * sd)[..., None], blocks + shift))
        asked = query_node == node[:, None]  # [B, Q]
        do_value = mean + query_z * sd  # [B, Q]
        query_values.copy_(torch.where(asked, do_value, query_values))
        value[:, cf_rows] = torch.where(asked, do_value, value[:, cf_rows])
        return value

    return intervene
