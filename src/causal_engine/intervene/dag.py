"""The runtime DAG: adjacency, topological generations, edges into intervened nodes masked out.

The graph questions themselves (generations, reachability, the NOTEARS term) are `causal_engine.graphs`.

Convention: `adjacency[i, j] = 1` means an edge i -> j (row = parent, column = child), as in
`causal_engine.tables.load_graph`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from causal_engine.graphs import notears, topological_generations


class DAGRewiring(nn.Module):
    """Holds the graph a structural network follows, and rewires it per intervention.

    Fixed (default): the given adjacency. Learnable (`learnable=True`): edge probabilities
    sigmoid(logits) restricted to the support of `adjacency` (pass all-ones off the diagonal to learn the
    whole graph), with an L1 `sparsity()` and the NOTEARS `acyclicity()` penalty h(A) = tr(exp(A∘A)) − D,
    which is zero exactly on DAGs.
    """

    def __init__(self, adjacency: Tensor | np.ndarray, learnable: bool = False, init_logit: float = 2.0) -> None:
        super().__init__()
        adj = torch.as_tensor(np.asarray(adjacency), dtype=torch.float32)
        if adj.dim() != 2 or adj.shape[0] != adj.shape[1]:
            raise ValueError(f"adjacency must be square, got shape {tuple(adj.shape)}")
        if torch.diagonal(adj).any():
            raise ValueError("adjacency has a self-loop (non-zero diagonal)")
        self.register_buffer("support", (adj != 0).float())  # [D, D]
        self.learnable = learnable
        if learnable:
            self.logits = nn.Parameter(torch.full_like(adj, init_logit))
        else:
            topological_generations(adj)  # fail early on a cycle

    @property
    def num_nodes(self) -> int:
        return self.support.shape[0]

    def adjacency(self) -> Tensor:
        """[D, D] edge weights in [0, 1]: the fixed graph, or edge probabilities when learnable."""
        if self.learnable:
            return torch.sigmoid(self.logits) * self.support
        return self.support

    def generations(self) -> list[list[int]]:
        """Topological generations of the current graph (learnable: edges with probability > 0.5)."""
        return topological_generations(self.adjacency().detach() > 0.5)

    def masked(self, cut: Tensor | None = None) -> Tensor:
        """Edge weights with edges into intervened nodes removed: [D, D], or [B, D, D] given cut [B, D]."""
        adj = self.adjacency()
        if cut is None:
            return adj
        return adj.unsqueeze(0) * (~cut).unsqueeze(1).to(adj.dtype)  # zero column j where row b cuts j

    def sparsity(self) -> Tensor:
        """Mean edge weight (L1); constant for a fixed graph."""
        return self.adjacency().sum() / max(self.num_nodes * (self.num_nodes - 1), 1)

    def acyclicity(self) -> Tensor:
        """NOTEARS h(A) = tr(exp(A∘A)) − D ≥ 0, zero iff the weighted graph is acyclic."""
        return notears(self.adjacency())
