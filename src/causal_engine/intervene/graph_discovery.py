"""The graph from the data: the shipped causal PFN's edge probabilities, refined on the table, made a DAG.

`task=query data.graph_path=discover` uses this instead of an edge list:

1. the PFN (`causal_engine.discovery`, loaded weights-only from `checkpoint`) reads the observational rows and
   gives edge probabilities P [D, D] (row = parent); a table wider than the checkpoint's `max_nodes` is refused.
   They are the net's own, not the calibrated ones `task=discover` writes: the steps below were built on them,
   and starting from the calibrated ones gave worse answers on 3 of the 7 tables of `scripts/bench_query.py
   --graphs` and better on none;
2. a StructuralMLP with a learnable adjacency, its logits initialised at logit(P), is fitted to the rows with
   an L1 sparsity penalty and the NOTEARS acyclicity term (`causal_engine.graphs.notears`), so the data can
   confirm, drop or re-orient what the PFN proposed while the penalties push towards a sparse DAG;
3. the refined probabilities are made a DAG deterministically: edges with probability > `threshold` are
   added from the most to the least probable, skipping any that would close a cycle;
4. with `explain_dependences` (the default), edges below the threshold are added in the same order while the
   table shows a dependence the graph cannot explain (`graphs.unexplained_dependences`: two variables with
   no common ancestor and no path between them, yet correlated), so an out-of-prior table whose
   probabilities all fall below the threshold does not get an empty graph whose every answer is "no effect".
   In effect the threshold drops to the highest one whose graph explains the table. Every edge down to it is
   kept, also one that explains no further pair: a missing edge biases an answer, an extra one costs variance.

The PFN sees observational rows only (rows a regime column marks as intervened are left out of this step).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from causal_engine.discovery.checkpoint import load_pfn, warn_outside_training
from causal_engine.discovery.discover import predict, table_batch, warn_discrete_columns
from causal_engine.errors import UserError
from causal_engine.graphs import greedy_dag, marginally_independent, unexplained_dependences
from causal_engine.intervene.losses import intervention_loss
from causal_engine.intervene.models import StructuralMLP

DISCOVER = "discover"  # the data.graph_path value that asks for this step


class GraphDiscoveryError(UserError):
    """The table cannot go through the PFN (too wide, too few rows)."""


def refine(
    x: Tensor,
    probs: Tensor,
    steps: int = 500,
    lr: float = 0.01,
    sparsity_weight: float = 0.001,
    acyclicity_weight: float = 0.02,
    hidden_dims: tuple[int, ...] = (16,),
    seed: int = 0,
) -> Tensor:
    """Edge probabilities [D, D] after fitting a learnable-graph StructuralMLP to rows x [N, D] (full batch),
    its logits starting at logit(probs) (clamped to [0.02, 0.98] so no edge starts beyond recall)."""
    d = x.shape[1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = StructuralMLP(np.ones((d, d)) - np.eye(d), hidden_dims=hidden_dims, learnable_graph=True)
    net.set_scaler(x.mean(0), x.std(0))
    with torch.no_grad():
        net.dag.logits.copy_(torch.logit(probs.clamp(0.02, 0.98)))
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    cut = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(steps):
        pred, target, _ = net.fit_terms(x, cut)  # [N, D] standardised
        loss = (
            intervention_loss(pred, target, cut)
            + sparsity_weight * net.dag.sparsity()
            + acyclicity_weight * net.dag.acyclicity()
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.dag.adjacency().detach() * (1 - torch.eye(d))


def explain_dependences(frame: pd.DataFrame, probs: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """`adjacency` [D, D] (a DAG over `frame`'s columns) with edges added from the most to the least probable
    under `probs` [D, D], skipping any that would close a cycle, until it explains every dependence
    `unexplained_dependences` finds in `frame` (or no edge is left)."""
    names = list(frame.columns)
    missed = unexplained_dependences(frame, adjacency)
    pairs = [(names.index(a), names.index(b)) for a, b, _ in missed]
    graph = nx.DiGraph(adjacency)
    graph.add_nodes_from(range(len(names)))
    adjacency = adjacency.copy()
    candidates = sorted(((float(probs[i, j]), i, j) for i, j in zip(*np.nonzero(1 - adjacency), strict=True)
                         if i != j), key=lambda e: (-e[0], e[1], e[2]))  # fmt: skip
    for _, i, j in candidates:
        if not pairs:
            break
        if nx.has_path(graph, j, i):
            continue
        graph.add_edge(i, j)
        adjacency[i, j] = 1.0
        independent = marginally_independent(adjacency).numpy()
        pairs = [(a, b) for a, b in pairs if independent[a, b]]
    return adjacency


@dataclass
class GraphDiscovery:
    """`task.discovery`: the PFN checkpoint and the refinement's settings (see the module docstring)."""

    checkpoint: str
    threshold: float = 0.5
    steps: int = 500
    lr: float = 0.01
    sparsity_weight: float = 0.001
    acyclicity_weight: float = 0.02
    explain_dependences: bool = True

    def __call__(self, frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
        """The graph for `frame`'s (observational, numeric) columns: an edge list with columns source, target,
        pfn_probability, refined_probability and added_for (threshold: above `threshold`; dependence: added
        to explain a dependence, step 4 of the module docstring), most probable first."""
        names = list(frame.columns)
        net = load_pfn(self.checkpoint, key="task.discovery.checkpoint")
        if len(names) > net.max_nodes:
            raise GraphDiscoveryError(
                f"data.graph_path=discover: the table has {len(names)} variables, but the PFN checkpoint "
                f"(task.discovery.checkpoint={self.checkpoint}) supports at most max_nodes={net.max_nodes}; "
                "select fewer columns or give the graph as an edge list (data.graph_path=EDGES.csv)."
            )
        if len(frame) < 10:
            raise GraphDiscoveryError(
                f"data.graph_path=discover needs at least 10 observational rows, the table has {len(frame)}."
            )
        warn_outside_training(self.checkpoint, len(names), key="task.discovery.checkpoint")
        warn_discrete_columns(frame)
        batch, _ = table_batch(frame, None)
        probs, _ = predict(net, batch)  # [D, D] uncalibrated (module docstring)
        x = torch.tensor(frame.to_numpy(), dtype=torch.float32)  # [N, D]
        refined = refine(x, probs, self.steps, self.lr, self.sparsity_weight, self.acyclicity_weight, seed=seed)
        kept = greedy_dag(refined.numpy(), self.threshold)
        adjacency = explain_dependences(frame, refined.numpy(), kept) if self.explain_dependences else kept
        src, dst = np.nonzero(adjacency)
        edges = pd.DataFrame(
            {
                "source": [names[i] for i in src],
                "target": [names[j] for j in dst],
                "pfn_probability": probs.numpy()[src, dst],
                "refined_probability": refined.numpy()[src, dst],
                "added_for": np.where(kept[src, dst] > 0, "threshold", "dependence"),
            }
        )
        return edges.sort_values("refined_probability", ascending=False, ignore_index=True)


def edge_adjacency(edges: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Adjacency [D, D] over `names` of an edge list with columns source, target."""
    adjacency = np.zeros((len(names), len(names)))
    for s, t in zip(edges["source"], edges["target"], strict=True):
        adjacency[names.index(s), names.index(t)] = 1.0
    return adjacency
