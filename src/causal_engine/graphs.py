"""Graph utilities every system shares: topological order, descendants, reachability, the NOTEARS term, the links
and edges that edge probabilities predict, a DAG from edge scores, the structural intervention distance, and the
check of a graph against a table (the dependences the table shows that the graph's marginal independences deny).

Convention everywhere in ``causal_engine``: ``adjacency[..., i, j] != 0`` iff ``i -> j`` (row = parent, column =
child). The functions take dense adjacency tensors, batched over any leading dimensions where the maths allows
it, so the simulator (``scm``), the PFN (``discovery``) and the structural models (``intervene``) ask the same
question the same way. Sampling random graphs is the prior's business and lives in ``scm/graphs.py``.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import networkx as nx
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from causal_engine.errors import require_extra


def _edges(adjacency: Tensor | np.ndarray) -> Tensor:
    """0/1 float32 edge indicators of any numeric or bool adjacency, same shape and device."""
    return (torch.as_tensor(adjacency) != 0).to(torch.float32)


def topological_order(adjacency: Tensor) -> Tensor:
    """A topological order ``[B, d]`` (long) of each graph ``[B, d, d]``: parents always come before children.

    Kahn's algorithm vectorised over the batch (the loop runs over the ``d`` positions; ties go to the lowest
    node index, so the result is deterministic). Raises ``ValueError`` naming the graphs that contain a cycle.
    """
    if adjacency.dim() != 3 or adjacency.shape[1] != adjacency.shape[2]:
        raise ValueError(f"adjacency must have shape [B, d, d], got {tuple(adjacency.shape)}")
    adj = _edges(adjacency)
    batch, d, _ = adj.shape
    rows = torch.arange(batch, device=adj.device)
    in_degree = adj.sum(1)  # [B, d] parents not yet placed
    placed = torch.zeros(batch, d, dtype=torch.bool, device=adj.device)
    order = torch.empty(batch, d, dtype=torch.long, device=adj.device)
    for p in range(d):
        ready = (in_degree == 0) & ~placed  # [B, d]
        stuck = ~ready.any(-1)
        if stuck.any():
            bad = stuck.nonzero().flatten().tolist()
            raise ValueError(f"adjacency is not acyclic: graph(s) {bad[:10]} contain a directed cycle")
        node = ready.to(torch.uint8).argmax(-1)  # [B] first ready node
        order[:, p] = node
        placed[rows, node] = True
        in_degree -= adj[rows, node]
    return order


def topological_generations(adjacency: Tensor | np.ndarray) -> list[list[int]]:
    """Nodes of one graph ``[d, d]`` grouped by depth (roots first); one generation can be computed together.

    Raises ``ValueError`` naming the nodes left on a cycle.
    """
    adj = _edges(adjacency).bool()
    indegree = adj.sum(0).tolist()
    remaining = set(range(adj.shape[0]))
    generations: list[list[int]] = []
    while remaining:
        level = sorted(j for j in remaining if indegree[j] == 0)
        if not level:
            raise ValueError(f"the graph has a cycle through nodes {sorted(remaining)}")
        generations.append(level)
        for i in level:
            remaining.discard(i)
            for j in adj[i].nonzero().flatten().tolist():
                indegree[j] -= 1
    return generations


def descendants(adjacency: Tensor | np.ndarray) -> Tensor:
    """``reach[..., i, j]`` (bool ``[..., d, d]``): there is a directed path of length >= 1 from i to j.

    Transitive closure by repeated squaring (``ceil(log2 d)`` matmuls), exact for any graph, cycles included
    (a node on a cycle is its own descendant).
    """
    reach = _edges(adjacency)
    d = reach.shape[-1]
    for _ in range(max(1, math.ceil(math.log2(max(d, 2))))):
        reach = (reach + reach @ reach).clamp_(max=1.0)
    return reach.bool()


def reachability(adjacency: Tensor | np.ndarray) -> Tensor:
    """``reach[..., i, j]`` (bool ``[..., d, d]``): j is i itself or one of its descendants."""
    reach = descendants(adjacency)
    return reach | torch.eye(reach.shape[-1], dtype=torch.bool, device=reach.device)


def marginally_independent(adjacency: Tensor | np.ndarray) -> Tensor:
    """``indep[i, j]`` (bool ``[d, d]``): the DAG makes x_i and x_j independent in every distribution that is
    Markov to it, because no node is an ancestor-or-self of both (no directed path either way, no common
    ancestor). The diagonal is False."""
    reach = reachability(adjacency).float()  # [a, i]: i is a or a descendant of a
    return (reach.T @ reach) == 0  # [i, j]: no a reaches both


def reachable(adjacency: Tensor, order: Tensor, sources: Tensor) -> Tensor:
    """``reach[b, q, j]`` (bool ``[B, Q, d]``): node j is one of the ``sources[b, q]`` (bool ``[B, Q, d]``) or one
    of their descendants.

    One pass over the topological ``order`` ([B, d]): a node is reached when a source or any reached parent
    points at it. O(B · Q · d²) in d small steps, cheaper than the full closure when Q is small.
    """
    adj = _edges(adjacency)
    reach = sources.to(torch.float32).clone()  # [B, Q, d]
    rows = torch.arange(adj.shape[0], device=adj.device)
    for p in range(adj.shape[-1]):
        node = order[:, p]  # [B]
        parents = adj[rows, :, node]  # [B, d]
        from_parents = torch.bmm(reach, parents[:, :, None]).squeeze(-1)  # [B, Q] reached parents
        reach[rows, :, node] = torch.maximum(reach[rows, :, node], (from_parents > 0).float())
    return reach.bool()


def notears(weights: Tensor) -> Tensor:
    """NOTEARS' acyclicity term h(W) = tr(exp(W ∘ W)) − d of edge weights ``[..., d, d]``, shape ``[...]``.

    h >= 0, and h = 0 exactly when the weighted graph is acyclic (every closed walk has zero weight).
    Differentiable, batched as one ``torch.linalg.matrix_exp``; a zero row and column (a padding node) adds
    exp(0) = 1 to the trace, which the ``- d`` cancels.
    """
    return torch.linalg.matrix_exp(weights * weights).diagonal(dim1=-2, dim2=-1).sum(-1) - weights.shape[-1]


def link_probabilities(probs: Tensor) -> Tensor:
    """P(i and j are adjacent) [..., D, D] (symmetric) from edge probabilities [..., D, D]: in a DAG i -> j and
    j -> i exclude each other, so it is their sum (capped at 1). It stays high where the rows cannot tell the
    direction (linear-Gaussian pairs) but show the link."""
    return (probs + probs.transpose(-1, -2)).clamp_max(1.0)


def predicted_edges(probs: Tensor, threshold: float = 0.5) -> Tensor:
    """The edges [..., D, D] (bool) that edge probabilities [..., D, D] predict: i -> j when i and j are linked
    (`link_probabilities`) with probability >= threshold and i -> j is the more probable direction (an exact tie
    goes to i < j). A zero row and column (a padding node) gets no edge.

    The pair, not each direction, meets the threshold: from observational rows a link's direction is often not
    identifiable (a linear-Gaussian pair, any pair inside a Markov equivalence class), so a calibrated model
    splits its belief, say 0.45 / 0.35, and a threshold on each direction would drop a link that is 80 % likely.
    """
    back = probs.transpose(-1, -2)
    d = probs.shape[-1]
    first = torch.ones(d, d, dtype=torch.bool, device=probs.device).triu(1)  # i < j
    return ((probs > back) | ((probs == back) & first)) & (link_probabilities(probs) >= threshold)


def greedy_dag(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Adjacency [D, D] (0/1) of the edges with probability > threshold, added most probable first and
    skipping any that would close a cycle (ties broken by (parent, child) index), so the result is a DAG."""
    d = len(probs)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(d))
    order = sorted(
        ((float(probs[i, j]), i, j) for i in range(d) for j in range(d) if i != j and probs[i, j] > threshold),
        key=lambda e: (-e[0], e[1], e[2]),
    )
    for _, i, j in order:
        if not nx.has_path(graph, j, i):
            graph.add_edge(i, j)
    adjacency = np.zeros((d, d))
    for i, j in graph.edges:
        adjacency[i, j] = 1.0
    return adjacency


def structural_intervention_distance(
    true: np.ndarray, pred: np.ndarray, score: np.ndarray | None = None, cpdag: bool = False
) -> float:
    """Normalised structural intervention distance (Peters & Buehlmann 2015) of a predicted graph [D, D] to the
    true DAG [D, D], in [0, 1]: the share of ordered pairs (i, j) whose effect of do(x_i) on x_j the predicted
    graph would estimate with a wrong adjustment set, so errors that change answers count and harmless ones do
    not (SHD counts both alike).

    Computed by gadjid's parent adjustment distance (Henckel, Wuertzen & Weichwald 2024), which equals the SID for
    a DAG and extends it to CPDAGs. A `cpdag` prediction (PC, GES) keeps a pair predicted in both directions as
    an undirected edge (NaN if gadjid cannot read it as a CPDAG); any other prediction is made a DAG first by
    dropping, most probable first, each edge that would close a cycle (`greedy_dag` over `score`), since only an
    acyclic answer has adjustment sets.
    """
    require_extra("the structural intervention distance (SID)", "gadjid")
    import gadjid  # a benchmark metric, not needed to train or run a model

    pred = np.asarray(pred) != 0
    np.fill_diagonal(pred, False)
    if cpdag:
        undirected = pred & pred.T
        graph = (pred & ~undirected).astype(np.int8) + 2 * np.triu(undirected).astype(np.int8)
    else:
        ranks = np.zeros(pred.shape)
        s = np.asarray(score if score is not None else pred, dtype=float)[pred]
        ranks[pred] = 1.0 + np.argsort(np.argsort(s, kind="stable"), kind="stable")  # 1..E: kept highest first
        graph = (greedy_dag(ranks, 0.0) != 0).astype(np.int8)
    try:
        normalised, _ = gadjid.parent_aid(
            (np.asarray(true) != 0).astype(np.int8), graph, edge_direction="from row to column"
        )
    except RuntimeError:  # gadjid's refusal of a graph it cannot read as a DAG or CPDAG
        return float("nan")
    return float(normalised)


def unexplained_dependences(
    frame: pd.DataFrame, adjacency: np.ndarray, alpha: float = 0.01
) -> list[tuple[str, str, float]]:
    """(i, j, Spearman rho) for every pair of `frame`'s columns that the graph `adjacency` [D, D] makes
    marginally independent (`marginally_independent`) but whose rank correlation in `frame` is significant at
    `alpha` after a Bonferroni correction over the pairs tested, strongest first: dependences a model on that
    graph cannot reproduce (an intervention on one of a pair shows no effect on the other). task=query checks
    the graph it follows with it, task=discover the graph it predicts.

    The test: Fisher's z of Spearman's rho, sd sqrt(1.06 / (n - 3)) under independence (Fieller, Hartley and
    Pearson 1957); ranks make it blind to units and monotone transforms, as the PFN is."""
    names = list(frame.columns)
    pairs = [(i, j) for i, j in zip(*np.nonzero(marginally_independent(adjacency).numpy()), strict=True) if i < j]
    n = len(frame)
    if not pairs or n < 4:
        return []
    rho = frame.rank().corr().to_numpy()  # [D, D] Spearman
    limit = NormalDist().inv_cdf(1 - alpha / (2 * len(pairs)))
    sd = math.sqrt(1.06 / (n - 3))
    found = [
        (names[i], names[j], float(rho[i, j]))
        for i, j in pairs
        if abs(math.atanh(min(abs(rho[i, j]), 1 - 1e-12))) / sd > limit
    ]
    return sorted(found, key=lambda f: -abs(f[2]))


def describe_dependences(found: list[tuple[str, str, float]], shown: int = 6) -> str:
    """`unexplained_dependences`'s pairs for a message: the `shown` strongest as a~b (rho), then a count."""
    text = ", ".join(f"{a}~{b} ({rho:+.2f})" for a, b, rho in found[:shown])
    return text + (f" and {len(found) - shown} more" if len(found) > shown else "")
