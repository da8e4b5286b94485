"""Batched structural causal models: ground truth, noise, simulation, hard interventions, counterfactuals.

An SCM here is additive-noise with the seed's edge mechanisms::

    x_j = noise_j                                                    if j has no parents
    x_j = clamp(noise_j + sum_{i -> j} f_{ij}(x_i), -20, 20)         otherwise
    x_j = v_j                                                        under do(x_j = v_j)

``simulate`` evaluates a whole batch of B graphs × S samples at once. It walks the topological order (``d``
steps, one node per graph per step, selected by row index so graphs with different orders share the step) and
*pushes* each finished node's value through the mechanisms of its out-edges into its children's rows (an
``index_add_`` over all edges leaving that position in the whole batch; each needed (mechanism, node) value is
computed once, and copied only for a second child using the same mechanism). Data is node-major, ``[B * d, S]``,
in ONE buffer that holds a node's noise, then noise + parents' terms, then its value, so every step moves
contiguous rows of S samples. The cost is O(B · S · (d + E)) with no [B, S, d, d] intermediate and no padding to
a maximum degree, which is what makes the 7 600 samples per graph of the seed's configuration cheap (see
docs/scm.md for the measured speed-up). Interventions are a callback per step (``Intervene``), so ``simulate``
(a bool mask per sample) and ``sample_batch`` (contiguous regime blocks, O(hits)) each apply their own form.

Because the exogenous noise is an explicit input, a counterfactual needs no abduction step: the factual world and
the counterfactual world are two ``simulate`` calls with the *same* noise and different interventions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from causal_engine.graphs import topological_order
from causal_engine.scm.graphs import check_generator, check_positive_int, sample_dags_and_order
from causal_engine.scm.mechanisms import (
    KERNELS,
    MECHANISMS,
    NO_EDGE,
    NODE_CLAMP,
    NUM_MECHANISMS,
    mechanism_indices,
)


@dataclass
class SCM:
    """The ground truth of B SCMs on d nodes each (all tensors on one device).

    adjacency:   [B, d, d] float {0, 1}; ``adjacency[b, i, j] = 1`` iff i -> j.
    mechanisms:  [B, d, d] long; index into ``MECHANISMS`` of edge i -> j, ``NO_EDGE`` (-1) where there is none.
    noise_scale: [B, d] float; standard deviation of each node's additive Gaussian noise.
    order:       [B, d] long; a topological order (``order[b, 0]`` has no parents).
    """

    adjacency: Tensor
    mechanisms: Tensor
    noise_scale: Tensor
    order: Tensor

    @property
    def num_graphs(self) -> int:
        return self.adjacency.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.adjacency.shape[-1]

    def __getitem__(self, graphs: slice) -> SCM:
        """The SCMs of a slice of the batch (views, no copies)."""
        return SCM(
            adjacency=self.adjacency[graphs],
            mechanisms=self.mechanisms[graphs],
            noise_scale=self.noise_scale[graphs],
            order=self.order[graphs],
        )

    def to(self, device: torch.device | str) -> SCM:
        return SCM(
            adjacency=self.adjacency.to(device),
            mechanisms=self.mechanisms.to(device),
            noise_scale=self.noise_scale.to(device),
            order=self.order.to(device),
        )


def build_scm(adjacency: Tensor, mechanisms: Tensor, noise_scale: float | Tensor = 1.0) -> SCM:
    """Validate a user-given ground truth (e.g. a known graph) and compute its topological order.

    ``adjacency`` [B, d, d] (any nonzero = edge), ``mechanisms`` [B, d, d] long with ``NO_EDGE`` exactly where
    there is no edge, ``noise_scale`` a float or a tensor broadcastable to [B, d]. Cycles raise ``ValueError``.
    """
    if adjacency.dim() != 3 or adjacency.shape[1] != adjacency.shape[2]:
        raise ValueError(f"adjacency must have shape [B, d, d], got {tuple(adjacency.shape)}")
    if mechanisms.shape != adjacency.shape or mechanisms.dtype != torch.long:
        raise ValueError(
            f"mechanisms must be a long tensor of shape {tuple(adjacency.shape)} (like adjacency), "
            f"got {mechanisms.dtype} {tuple(mechanisms.shape)}"
        )
    edge = adjacency != 0
    if edge.diagonal(dim1=1, dim2=2).any():
        raise ValueError("adjacency has a self-loop (nonzero diagonal); an SCM needs a DAG")
    if (mechanisms[edge] < 0).any() or (mechanisms[edge] >= NUM_MECHANISMS).any():
        raise ValueError(f"every edge needs a mechanism index in [0, {NUM_MECHANISMS - 1}] (see MECHANISMS)")
    if (mechanisms[~edge] != NO_EDGE).any():
        raise ValueError(f"mechanisms must be {NO_EDGE} (NO_EDGE) wherever adjacency has no edge")
    batch, d, _ = adjacency.shape
    scale = torch.as_tensor(noise_scale, dtype=torch.float32, device=adjacency.device)
    try:
        scale = scale.broadcast_to(batch, d).clone()
    except RuntimeError as err:
        raise ValueError(f"noise_scale must broadcast to [B, d] = [{batch}, {d}], got {tuple(scale.shape)}") from err
    if not torch.isfinite(scale).all() or (scale < 0).any():
        raise ValueError("noise_scale must be finite and >= 0")
    return SCM(
        adjacency=edge.float(),
        mechanisms=mechanisms.clone(),
        noise_scale=scale,
        order=topological_order(adjacency),
    )


def sample_scm(
    batch: int,
    num_nodes: int,
    *,
    graph: str = "er",
    expected_parents: float | None = 2.0,
    edge_prob: float | None = None,
    noise_scale: float = 1.0,
    mechanisms: Sequence[str] = MECHANISMS,
    generator: torch.Generator,
) -> SCM:
    """Sample B random SCMs: a DAG (see ``sample_dags`` for the graph options), each edge's mechanism uniform over
    ``mechanisms`` (default all ten, as the seed's ``randint(1, 11)``), Gaussian noise of sd ``noise_scale``."""
    generator = check_generator(generator)
    if not (isinstance(noise_scale, int | float) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a number >= 0, got {noise_scale!r}")
    allowed = mechanism_indices(mechanisms).to(generator.device)
    adjacency, order = sample_dags_and_order(
        batch, num_nodes, graph=graph, expected_parents=expected_parents, edge_prob=edge_prob, generator=generator
    )
    draws = torch.randint(len(allowed), (batch, num_nodes, num_nodes), generator=generator, device=generator.device)
    kinds = torch.where(adjacency > 0, allowed[draws], torch.full_like(draws, NO_EDGE))
    scale = torch.full((batch, num_nodes), float(noise_scale), device=generator.device)
    return SCM(adjacency=adjacency, mechanisms=kinds, noise_scale=scale, order=order)


def sample_noise(
    scm: SCM, num_samples: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Exogenous noise ``[B, S, d]``: independent N(0, noise_scale[b, j]^2) per graph, sample and node."""
    num_samples = check_positive_int("num_samples", num_samples)
    generator = check_generator(generator)
    eps = torch.randn(
        scm.num_graphs, num_samples, scm.num_nodes, generator=generator, device=generator.device, dtype=dtype
    )
    return eps * scm.noise_scale[:, None, :].to(dtype)


@dataclass
class _Step:
    """What the simulation loop does at one topological position (rows index the flat ``[B * d, S]`` layout).

    node:        [B] the node computed in each graph (``order[:, p]``).
    rows:        [B] its row ``b * d + node``.
    has_parents: [B] bool; ``all_parents`` / ``no_parents`` say when it is uniform (the common case: skip a
                 ``where``). Roots keep their noise unclamped, as in the seed.
    term_graphs: [U] the graph of each (mechanism, graph) value some edge leaving these nodes needs, grouped by
                 mechanism; ``kind_counts[m]`` of them use mechanism m. Only these values are computed.
    first_rows:  [U] the row ``b * d + child`` of the first edge using each value: added straight from the values.
    extra_terms: [E - U] the value row of every other edge (a node with two ``sin`` children), copied first;
    extra_rows:  [E - U] and the child row it is added to. Each child row appears once per step.
    """

    node: Tensor
    rows: Tensor
    has_parents: Tensor
    all_parents: bool
    no_parents: bool
    term_graphs: Tensor
    kind_counts: list[int]
    first_rows: Tensor
    extra_terms: Tensor
    extra_rows: Tensor


def _plan(scm: SCM) -> list[_Step]:
    """Group all graphs' edges by their parent's topological position, and deduplicate the mechanism values each
    position needs (a node with three ``sin`` children computes ``sin`` once; unused mechanisms not at all)."""
    batch, d = scm.num_graphs, scm.num_nodes
    order = scm.order
    position = order.argsort(-1)  # [B, d] node -> position
    graph, parent, child = (scm.adjacency != 0).nonzero(as_tuple=True)  # [E] each
    step = position[graph, parent]
    kind = scm.mechanisms[graph, parent, child]
    key = (step * NUM_MECHANISMS + kind) * batch + graph
    by_key = key.argsort(stable=True)  # edges sorted by (step, mechanism, graph)
    graph, child, step, key = graph[by_key], child[by_key], step[by_key], key[by_key]
    terms, edge_term = torch.unique_consecutive(key, return_inverse=True)  # [U] distinct (step, mechanism, graph)
    term_step, term_kind = terms // (NUM_MECHANISMS * batch), (terms // batch) % NUM_MECHANISMS
    terms_per_step = torch.bincount(term_step, minlength=d)
    first_term = torch.cumsum(terms_per_step, 0) - terms_per_step  # [d] offset of each step's values
    kind_counts = torch.bincount(term_step * NUM_MECHANISMS + term_kind, minlength=d * NUM_MECHANISMS)
    first = torch.ones_like(key, dtype=torch.bool)  # the first edge of each value (edges are sorted by value)
    first[1:] = key[1:] != key[:-1]
    child_row = graph * d + child
    extra_per_step = torch.bincount(step[~first], minlength=d).tolist()
    has_parents = (scm.adjacency.sum(1) > 0).gather(1, order).t()  # [d, B] by position
    return [
        _Step(
            node=order[:, p],
            rows=torch.arange(batch, device=order.device) * d + order[:, p],
            has_parents=has_parents[p],
            all_parents=all_parents,
            no_parents=not any_parents,
            term_graphs=term_graphs % batch,
            kind_counts=counts,
            first_rows=first_rows,
            extra_terms=extra_terms,
            extra_rows=extra_rows,
        )
        for p, (all_parents, any_parents, term_graphs, counts, first_rows, extra_terms, extra_rows) in enumerate(
            zip(
                has_parents.all(1).tolist(),
                has_parents.any(1).tolist(),
                terms.split(terms_per_step.tolist()),
                kind_counts.view(d, NUM_MECHANISMS).tolist(),
                child_row[first].split(terms_per_step.tolist()),
                (edge_term - first_term[step])[~first].split(extra_per_step),
                child_row[~first].split(extra_per_step),
                strict=True,
            )
        )
    ]


# (graphs, step p, node [b], value [b, S]) -> value with the hard interventions on node[i] of graph graphs[i]
# applied (in place or not): called once per step, after the node's structural value is computed; ``graphs`` is a
# slice of the batch (see BLOCK_BYTES)
Intervene = Callable[[slice, int, Tensor, Tensor], Tensor]

# Graphs are simulated in blocks whose [b, d, S] part of the buffer stays cache-sized: every step touches rows
# all over the block, and streaming a 50 MB buffer from memory d times costs more (1.6x at B = 32, d = 50, the
# seed's 7 600 samples per graph) than the Python steps of a few more blocks.
BLOCK_BYTES = 8 * 2**20


def simulate_node_major(scm: SCM, eps: Tensor, intervene: Intervene | None = None) -> Tensor:
    """The simulation loop, IN PLACE on contiguous node-major noise ``eps`` [B, d, S]; returns it, holding x.

    One buffer serves three roles: a node's row starts as its noise, receives its parents' terms as they finish
    (``index_add_``), and is then replaced by the node's value. Node-major keeps each node's samples contiguous,
    so every step moves whole rows, and no second [B, d, S] buffer is ever allocated. ``intervene`` maps the
    nodes computed at a step to their hard interventions; ``simulate`` and ``sample_batch`` build it from their
    own representation of the targets. No input validation: call ``simulate`` unless you built the inputs.
    """
    batch, d, num_samples = eps.shape
    block = max(1, BLOCK_BYTES // max(1, d * num_samples * eps.element_size()))
    for start in range(0, batch, block):
        graphs = slice(start, min(start + block, batch))
        flat = eps[graphs].view((graphs.stop - start) * d, num_samples)  # noise + parents' terms; then the value
        for p, step in enumerate(_plan(scm[graphs])):
            value = flat.index_select(0, step.rows)  # [b, S]
            if step.all_parents:
                value.clamp_(-NODE_CLAMP, NODE_CLAMP)
            elif not step.no_parents:
                value = torch.where(step.has_parents[:, None], value.clamp(-NODE_CLAMP, NODE_CLAMP), value)
            if intervene is not None:
                value = intervene(graphs, p, step.node, value)
            flat.index_copy_(0, step.rows, value)
            if step.first_rows.numel():
                terms = value.index_select(0, step.term_graphs)  # [U, S], grouped by mechanism
                first = 0
                for kernel, count in zip(KERNELS, step.kind_counts, strict=True):
                    if count:
                        segment = terms[first : first + count]
                        kernel(segment, segment)
                        first += count
                flat.index_add_(0, step.first_rows, terms)
                if step.extra_rows.numel():
                    flat.index_add_(0, step.extra_rows, terms.index_select(0, step.extra_terms))  # [E - U, S]
    return eps


def _check_intervention(noise: Tensor, targets: Tensor | None, values: Tensor | None) -> Intervene | None:
    """Validate ``targets``/``values`` against noise [B, S, d] and return the per-step lookup (no copies)."""
    if (targets is None) != (values is None):
        raise ValueError("give targets and values together (or neither for observational data)")
    if targets is None or values is None:
        return None
    if targets.dtype != torch.bool:
        raise ValueError(f"targets must be a bool tensor (True = intervened), got dtype {targets.dtype}")
    if not torch.isfinite(values).all():
        raise ValueError("intervention values must be finite")
    try:
        hit_all = targets.broadcast_to(noise.shape).transpose(1, 2)  # [B, d, S] view
        forced_all = values.to(noise.dtype).broadcast_to(noise.shape).transpose(1, 2)
    except RuntimeError as err:
        raise ValueError(
            f"targets {tuple(targets.shape)} and values {tuple(values.shape)} must broadcast to noise's "
            f"[B, S, d] = {tuple(noise.shape)} (e.g. [B, 1, d] for one intervention per graph)"
        ) from err

    def intervene(graphs: slice, step: int, node: Tensor, value: Tensor) -> Tensor:
        rows = torch.arange(node.shape[0], device=node.device)
        return torch.where(hit_all[graphs][rows, node], forced_all[graphs][rows, node], value)

    return intervene


def simulate(scm: SCM, noise: Tensor, targets: Tensor | None = None, values: Tensor | None = None) -> Tensor:
    """Evaluate the SCMs on exogenous ``noise`` [B, S, d], optionally under hard interventions.

    ``targets`` (bool) and ``values`` broadcast to [B, S, d]: where ``targets[b, s, j]`` is True the sample gets
    ``do(x_j = values[b, s, j])`` (its mechanism and noise are ignored, its descendants see ``v``); several nodes
    per sample and a different intervention per sample are fine. Returns x [B, S, d] in noise's dtype.
    """
    batch, d = scm.num_graphs, scm.num_nodes
    if noise.dim() != 3 or noise.shape[0] != batch or noise.shape[2] != d:
        raise ValueError(f"noise must have shape [B, S, d] = [{batch}, S, {d}], got {tuple(noise.shape)}")
    if not noise.is_floating_point():
        raise ValueError(f"noise must be a floating tensor, got dtype {noise.dtype}")
    intervene = _check_intervention(noise, targets, values)
    eps = torch.empty(batch, d, noise.shape[1], dtype=noise.dtype, device=noise.device)
    x = simulate_node_major(scm, eps.copy_(noise.transpose(1, 2)), intervene)  # [B, d, S], a copy of the noise
    return x.transpose(1, 2).contiguous()


def counterfactual(scm: SCM, noise: Tensor, targets: Tensor, values: Tensor) -> Tensor:
    """The counterfactual world of the factual samples ``simulate(scm, noise)`` under ``do(targets = values)``.

    Abduction is exact and free here because the exogenous ``noise`` that produced the factual rows is known:
    the counterfactual is ``simulate`` with the same noise and the new intervention (Pearl's three steps collapse
    to one). ``counterfactual(...) - simulate(scm, noise)`` is exactly 0 on every non-descendant of a target.
    """
    return simulate(scm, noise, targets, values)
