"""Batches of random DAGs (Erdős–Rényi, scale-free and small-world) as dense adjacency tensors.

Convention everywhere in ``causal_engine``: ``adjacency[b, i, j] = 1`` iff ``i -> j`` (row = parent, column =
child), float 0/1 so it can enter matmuls and losses directly. What one asks of a graph once it exists
(topological order, descendants, the acyclicity term) is in ``causal_engine.graphs``.

Graphs are drawn in "position space" (position ``p`` may only have parents at positions ``< p``, which makes
acyclicity free) and then relabelled by an independent random permutation per graph, so that a node's index
carries no information about its place in the causal order: a model that learns "lower index = cause" learns
nothing real.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

GRAPH_TYPES = ("er", "sf", "sw")
SMALL_WORLD_REWIRE = 0.2  # Watts-Strogatz rewiring probability of each lattice edge


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (e.g. causal_engine.seeding.stream_generator(seed)), "
            f"got {type(generator).__name__}"
        )
    return generator


def resolve_expected_parents(
    num_nodes: int, *, graph: str, expected_parents: float | None, edge_prob: float | None
) -> tuple[float, float]:
    """Return ``(edge_prob, expected_parents)`` for a ``num_nodes`` graph after validating the options.

    ``edge_prob`` wins when given (the seed's fixed 0.3); otherwise ``expected_parents`` sets the density so that
    it stays constant as ``d`` grows (a fixed edge probability gives ``0.3 * 49 / 2 ≈ 7`` parents per node at
    d = 50, a prior so dense that interventions saturate the node clamp). The two are linked by
    ``expected_parents = edge_prob * (d - 1) / 2`` (the mean number of earlier nodes is ``(d - 1) / 2``); the
    edge probability is capped at 1 (the complete DAG) for small ``d``.
    """
    if graph not in GRAPH_TYPES:
        raise ValueError(f"graph must be one of {GRAPH_TYPES}, got {graph!r}")
    if edge_prob is not None:
        if not 0.0 <= float(edge_prob) <= 1.0:
            raise ValueError(f"edge_prob must lie in [0, 1], got {edge_prob!r}")
        return float(edge_prob), float(edge_prob) * (num_nodes - 1) / 2.0
    if expected_parents is None:
        raise ValueError("give either expected_parents (mean parents per node) or edge_prob; both are None")
    if not math.isfinite(float(expected_parents)) or float(expected_parents) < 0.0:
        raise ValueError(f"expected_parents must be a finite number >= 0, got {expected_parents!r}")
    prob = min(1.0, 2.0 * float(expected_parents) / (num_nodes - 1)) if num_nodes > 1 else 0.0
    return prob, float(expected_parents)


def sample_dags(
    batch: int,
    num_nodes: int,
    *,
    graph: str = "er",
    expected_parents: float | None = 2.0,
    edge_prob: float | None = None,
    generator: torch.Generator,
) -> Tensor:
    """Sample ``batch`` random DAGs on ``num_nodes`` nodes: float ``[B, d, d]``, ``adj[b, i, j] = 1`` iff i -> j.

    - ``graph="er"``: every pair of positions is an edge independently with probability ``edge_prob`` (or the
      probability that gives ``expected_parents`` parents per node on average, see ``resolve_expected_parents``).
    - ``graph="sf"``: preferential attachment (Barabási–Albert-like). Position ``p`` picks ``m_p`` parents among
      positions ``< p`` without replacement with probability ∝ (degree + 1); ``m_p`` is ``floor(e)`` or
      ``ceil(e)`` with mean ``e = expected_parents`` (capped at ``p``), so the density matches ER at the same
      setting while early nodes become hubs with heavy-tailed out-degree. ``edge_prob``, if given, is converted
      to ``e = edge_prob * (d - 1) / 2``.
    - ``graph="sw"``: small world (Watts–Strogatz made acyclic). Position ``p`` points at the next ``k`` positions
      (a banded lattice, ``k = round(e)``, at least 1: local clusters and long chains), then each lattice edge is
      rewired with probability ``SMALL_WORLD_REWIRE`` to a uniformly random other position, oriented from the
      earlier to the later one (the shortcuts that make paths short).

    Nodes are randomly relabelled per graph; ``causal_engine.graphs.topological_order`` recovers an order (or use
    ``sample_dags_and_order``, which returns the one the graphs were drawn in).
    """
    return sample_dags_and_order(
        batch, num_nodes, graph=graph, expected_parents=expected_parents, edge_prob=edge_prob, generator=generator
    )[0]


def sample_dags_and_order(
    batch: int,
    num_nodes: int,
    *,
    graph: str = "er",
    expected_parents: float | None = 2.0,
    edge_prob: float | None = None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """``sample_dags`` plus the order it drew the graphs in: ``(adjacency [B, d, d], order [B, d] long)``.

    ``order[b, p]`` is the node at position ``p``; relabelling a position-ordered graph makes this a topological
    order for free (no Kahn pass).
    """
    batch = check_positive_int("batch", batch)
    num_nodes = check_positive_int("num_nodes", num_nodes)
    generator = check_generator(generator)
    prob, parents = resolve_expected_parents(
        num_nodes, graph=graph, expected_parents=expected_parents, edge_prob=edge_prob
    )
    if graph == "er":
        positional = _erdos_renyi_positions(batch, num_nodes, prob, generator)
    elif graph == "sf":
        positional = _scale_free_positions(batch, num_nodes, parents, generator)
    else:
        positional = _small_world_positions(batch, num_nodes, parents, generator)
    order = torch.rand(batch, num_nodes, generator=generator, device=generator.device).argsort(-1)  # [B, d]
    return relabel(positional, order), order


def _erdos_renyi_positions(batch: int, d: int, prob: float, generator: torch.Generator) -> Tensor:
    """Strictly upper-triangular ``[B, d, d]``: each forward pair is an edge with probability ``prob``."""
    coins = torch.rand(batch, d, d, generator=generator, device=generator.device)
    return (coins < prob).float().triu(diagonal=1)


def _scale_free_positions(batch: int, d: int, parents: float, generator: torch.Generator) -> Tensor:
    """Preferential attachment in position order; the loop runs over positions, the batch is vectorised.

    Sampling ``m`` of ``p`` candidates without replacement ∝ weight is the Gumbel-top-k trick: the ``m`` largest
    ``log w + Gumbel`` keys (one ``topk`` per position for the whole batch).
    """
    device = generator.device
    adj = torch.zeros(batch, d, d, device=device)
    degree = torch.zeros(batch, d, device=device)  # in + out degree so far
    base, frac = math.floor(parents), parents - math.floor(parents)
    m_max = min(d - 1, base + (frac > 0))
    if m_max == 0:
        return adj
    extra = torch.rand(batch, d, generator=generator, device=device) < frac  # [B, d]
    num_parents = base + extra.long()  # [B, d] how many parents each position asks for
    for p in range(1, d):
        k = min(m_max, p)
        uniform = torch.rand(batch, p, generator=generator, device=device).clamp_(min=1e-20)
        keys = torch.log(degree[:, :p] + 1.0) - torch.log(-torch.log(uniform))  # [B, p]
        chosen = keys.topk(k, dim=-1).indices  # [B, k] in decreasing key order
        keep = (torch.arange(k, device=device) < num_parents[:, p, None]).float()  # [B, k]
        column = torch.zeros(batch, p, device=device).scatter_(1, chosen, keep)  # [B, p]
        adj[:, :p, p] = column
        degree[:, :p] += column
        degree[:, p] = column.sum(-1)
    return adj


def _small_world_positions(batch: int, d: int, parents: float, generator: torch.Generator) -> Tensor:
    """Banded lattice ``0 < q - p <= k`` with each edge rewired, with probability ``SMALL_WORLD_REWIRE``, to
    ``(min(p, r), max(p, r))`` for a uniform ``r != p`` (two edges may merge, so rewiring can only thin the
    graph slightly). Strictly upper triangular like the others."""
    device = generator.device
    if d < 2:
        return torch.zeros(batch, d, d, device=device)
    k = max(1, round(parents))
    pos = torch.arange(d, device=device)
    gap = pos[None, :] - pos[:, None]  # [d, d] q - p
    lattice = ((gap > 0) & (gap <= k)).expand(batch, d, d)  # [B, d, d]
    rewire = lattice & (torch.rand(batch, d, d, generator=generator, device=device) < SMALL_WORLD_REWIRE)
    b, p, _ = rewire.nonzero(as_tuple=True)  # one row per rewired edge
    other = torch.randint(d - 1, p.shape, generator=generator, device=device)
    other = other + (other >= p).long()  # uniform over positions != p
    adj = (lattice & ~rewire).float()
    adj[b, torch.minimum(p, other), torch.maximum(p, other)] = 1.0
    return adj


def relabel(adjacency: Tensor, perm: Tensor) -> Tensor:
    """Move position ``p`` of each graph to node ``perm[b, p]``: ``out[b, perm[p], perm[q]] = adjacency[b, p, q]``.

    Then ``perm`` itself is a topological order of ``out`` when ``adjacency`` is upper triangular.
    """
    batch, d, _ = adjacency.shape
    position = perm.argsort(-1)  # [B, d] node -> position
    rows = adjacency.gather(1, position[:, :, None].expand(batch, d, d))
    return rows.gather(2, position[:, None, :].expand(batch, d, d))
