"""The PFN loss: Huber on deltas + BCE on edges + warmed-up acyclicity + L1, all masked for padding.

Acyclicity. We use NOTEARS' trace exponential h(W) = tr(exp(W o W)) - d (`causal_engine.graphs.notears`) on the
edge probabilities W, batched as one `torch.linalg.matrix_exp` on [B, d, d]. It is exactly zero iff the weighted
graph is acyclic (every closed walk has zero weight), so unlike a spectral-radius bound it needs no power
iteration whose gradient is only approximate, and the matrix exponential of 100 x 100 matrices is cheap on CPU.
Padding nodes have zero rows and columns, so each adds exactly exp(0) = 1 to the trace, which subtracting the
padded size d cancels. Early in training the probabilities are dense and h grows like exp(d p^2); we therefore penalise
log(1 + h / d_valid), which keeps the same zero set with a bounded gradient, and ramp its weight from 0
(a warm-up while the edge head is still random) to `acyclic` over `acyclic_ramp_steps`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.models import PFNOutput
from causal_engine.graphs import notears
from causal_engine.metrics import valid_edge_mask as edge_mask


def delta_mask(batch: DiscoveryBatch) -> Tensor:
    """Entries whose delta is predicted (real nodes, not the query's intervened nodes), [B, Q, d] bool."""
    return batch.node_mask[:, None, :] & ~batch.query_targets


def acyclicity(weights: Tensor, node_mask: Tensor) -> Tensor:
    """log(1 + h(W) / d_valid) per graph, h the NOTEARS trace exponential; zero iff acyclic. [B, d, d] -> [B]."""
    w = weights * edge_mask(node_mask)
    return torch.log1p(notears(w).clamp_min(0) / node_mask.sum(-1).clamp_min(1))


class PFNLoss(nn.Module):
    """Weighted sum of the four terms; returns the total and each term (for logging)."""

    def __init__(
        self,
        delta: float = 1.0,
        edge: float = 1.0,
        acyclic: float = 0.1,
        l1: float = 0.01,
        huber_beta: float = 1.0,
        acyclic_warmup_steps: int = 500,
        acyclic_ramp_steps: int = 1000,
    ):
        super().__init__()
        self.w_delta, self.w_edge, self.w_acyclic, self.w_l1 = delta, edge, acyclic, l1
        self.huber_beta = huber_beta
        self.warmup, self.ramp = acyclic_warmup_steps, acyclic_ramp_steps

    def acyclic_weight(self, step: int) -> float:
        """0 during warm-up, then a linear ramp to the full weight."""
        return self.w_acyclic * min(1.0, max(0.0, (step - self.warmup) / max(1, self.ramp)))

    def forward(self, out: PFNOutput, batch: DiscoveryBatch, true_delta_z: Tensor, step: int) -> dict[str, Tensor]:
        """`true_delta_z` [B, Q, d]: the counterfactual deltas divided by the observational std."""
        emask = edge_mask(batch.node_mask)
        dmask = delta_mask(batch)
        huber = F.huber_loss(out.delta, true_delta_z, reduction="none", delta=self.huber_beta)
        loss_delta = (huber * dmask).sum() / dmask.sum().clamp_min(1)
        bce = F.binary_cross_entropy_with_logits(out.edge_logits, batch.adjacency, reduction="none")
        loss_edge = (bce * emask).sum() / emask.sum().clamp_min(1)
        weights = out.edge_sample if out.edge_sample is not None else out.edge_probs
        loss_acyclic = acyclicity(weights, batch.node_mask).mean()
        loss_l1 = (weights * emask).sum() / emask.sum().clamp_min(1)
        total = (
            self.w_delta * loss_delta
            + self.w_edge * loss_edge
            + self.acyclic_weight(step) * loss_acyclic
            + self.w_l1 * loss_l1
        )
        return {"loss": total, "delta": loss_delta, "edge": loss_edge, "acyclic": loss_acyclic, "l1": loss_l1}
