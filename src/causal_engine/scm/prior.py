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
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from causal_engine.graphs import reachable
from causal_engine.scm.graphs import check_positive_int
from causal_engine.scm.mechanisms import MECHANISMS
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
