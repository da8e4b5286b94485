"""Causal losses: pure functions on standardised tensors, and `CausalLosses` that weighs them (weights in config).

Consistency (do(X = v) ⇒ X = v) holds by construction for hard interventions (`CausalUnit`), so it is a
unit test, not a loss. Composition (the null intervention reproduces the factual) is label-free and
usable on real data; counterfactual labels exist only in simulation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def intervention_loss(pred: Tensor, target: Tensor, cut: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean squared error over the (row, node) pairs whose mechanism is intact; pred/target/cut [B, K].

    Each node's error is averaged over its own intact rows first, so a node intervened on in most rows
    still counts as much as the others; nodes with no intact row are skipped. `weight` [B] weighs the
    rows (a bootstrap replicate's resampling counts). Branch-free, so it runs under `torch.func.vmap`.
    """
    keep = (~cut).to(pred.dtype)  # [B, K]
    if weight is not None:
        keep = keep * weight[:, None]
    per_node_rows = keep.sum(0)  # [K]
    present = (per_node_rows > 0).to(pred.dtype)  # [K]
    per_node = ((pred - target) ** 2 * keep).sum(0) / per_node_rows.clamp_min(1e-12)  # [K]
    return (per_node * present).sum() / present.sum().clamp_min(1)


def counterfactual_loss(pred_cf: Tensor, target_cf: Tensor, changed: Tensor | None = None) -> Tensor:
    """MSE between predicted and true counterfactuals [B, K]; `changed` [B, K] bool restricts it to the
    entries the intervention can move (descendants), so that copied values do not dilute the loss."""
    err = (pred_cf - target_cf) ** 2
    if changed is None:
        return err.mean()
    keep = changed.to(err.dtype)
    return (err * keep).sum() / keep.sum().clamp_min(1)


def composition_loss(x_null: Tensor, x: Tensor) -> Tensor:
    """MSE between the counterfactual under the null intervention and the factual (zero when exact)."""
    return ((x_null - x) ** 2).mean()


class CausalLosses(nn.Module):
    """Weighted sum of the causal terms. Terms with weight 0 are not computed by the caller."""

    def __init__(
        self,
        intervention_weight: float = 1.0,
        counterfactual_weight: float = 0.0,
        composition_weight: float = 0.0,
        sparsity_weight: float = 0.0,
        acyclicity_weight: float = 0.0,
    ) -> None:
        super().__init__()
        weights = {
            "intervention": intervention_weight,
            "counterfactual": counterfactual_weight,
            "composition": composition_weight,
            "sparsity": sparsity_weight,
            "acyclicity": acyclicity_weight,
        }
        for name, w in weights.items():
            if w < 0:
                raise ValueError(f"losses.{name}_weight must be >= 0, got {w}")
        self.weights = weights

    def active(self, name: str) -> bool:
        return self.weights[name] > 0

    def forward(self, terms: dict[str, Tensor]) -> Tensor:
        """Weighted total of the given terms (names as in `weights`); missing terms count zero."""
        total = torch.zeros((), device=next(iter(terms.values())).device)
        for name, value in terms.items():
            total = total + self.weights[name] * value
        return total
