"""Causal losses: pure functions on tensors, and `CausalLosses` that weighs them (weights in config).

The seed's four components are `intervention_loss` (fit, ignoring the entries an intervention set),
`counterfactual_loss` ("what if" predictions against labels), `consistency_loss` (a prediction of an
intervened variable must equal its set value) and `sparsity_loss` (L1 on weights). In a structural model
consistency holds by construction (`CausalUnit` replaces the node), so only networks that *predict* the
intervened variables, like a `CausalMLP` whose outputs are the variables, need it. Composition (the null
intervention reproduces the factual) is label-free and usable on real data; acyclicity is NOTEARS' h(A).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from causal_engine.errors import UserError


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


def consistency_loss(pred: Tensor, do_mask: Tensor, do_values: Tensor) -> Tensor:
    """MSE between the predictions of intervened variables and their set values, over the intervened
    entries only; pred [B, K], do_mask (bool or 0/1) and do_values [K] or [B, K]; 0 when nothing is set."""
    mask = do_mask.to(pred.device).expand_as(pred) != 0  # [B, K]
    err = (pred - do_values.to(pred).expand_as(pred)) ** 2
    return (err * mask).sum() / mask.sum().clamp_min(1)


def sparsity_loss(weights: Tensor) -> Tensor:
    """Mean absolute weight (L1), e.g. of a network's first layer so that unused inputs drop out."""
    return weights.abs().mean()


def composition_loss(x_null: Tensor, x: Tensor) -> Tensor:
    """MSE between the counterfactual under the null intervention and the factual (zero when exact)."""
    return ((x_null - x) ** 2).mean()


class CausalLosses(nn.Module):
    """Weighted sum of the causal terms; a weight of 0 switches a term off.

    In a plain PyTorch loop, call it on the batch:

        loss = causal_loss(y_pred, y)                                  # fit only
        loss = causal_loss(y_pred, y, do_mask=m, do_values=v,          # m, v [K] or [B, K]: outputs set by do
                           pred_cf=y_cf_pred, target_cf=y_cf,          # counterfactual predictions and labels
                           sparse_weights=model.input_weights)         # weights to keep sparse

    `terms(...)` (same arguments) returns the unweighted components by name for logging; `combine(terms)`
    weighs a dict of precomputed terms (how the structural LightningModule uses it).
    """

    def __init__(
        self,
        intervention_weight: float = 1.0,
        counterfactual_weight: float = 0.0,
        composition_weight: float = 0.0,
        sparsity_weight: float = 0.0,
        acyclicity_weight: float = 0.0,
        consistency_weight: float = 0.0,
    ) -> None:
        super().__init__()
        weights = {
            "intervention": intervention_weight,
            "counterfactual": counterfactual_weight,
            "composition": composition_weight,
            "sparsity": sparsity_weight,
            "acyclicity": acyclicity_weight,
            "consistency": consistency_weight,
        }
        for name, w in weights.items():
            if w < 0:
                raise UserError(f"losses.{name}_weight must be >= 0, got {w}")
        self.weights = weights

    def active(self, name: str) -> bool:
        return self.weights[name] > 0

    def terms(
        self,
        pred: Tensor,
        target: Tensor,
        do_mask: Tensor | None = None,
        do_values: Tensor | None = None,
        pred_cf: Tensor | None = None,
        target_cf: Tensor | None = None,
        cf_mask: Tensor | None = None,
        sparse_weights: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The active components, unweighted.

        Args:
            pred, target: predictions and observed values [B, K].
            do_mask, do_values: [K] or [B, K]; which outputs an intervention set, and to what. The
                intervention loss leaves those entries out; the consistency loss compares them with the values.
                None: nothing set in this batch.
            pred_cf, target_cf: counterfactual predictions and labels [B', K'] (None: no labels in this batch,
                the term is left out); `cf_mask` [B', K'] bool restricts it to the entries the intervention moves.
            sparse_weights: the weights the L1 term shrinks (required when sparsity_weight > 0).
        """
        cut = (
            torch.zeros_like(pred, dtype=torch.bool)
            if do_mask is None
            else do_mask.to(pred.device).expand_as(pred) != 0
        )
        out = {"intervention": intervention_loss(pred, target, cut)} if self.active("intervention") else {}
        if self.active("consistency"):
            if do_mask is None:
                out["consistency"] = pred.sum() * 0.0
            elif do_values is None:
                raise UserError("consistency_weight > 0 needs do_values alongside do_mask")
            else:
                out["consistency"] = consistency_loss(pred, do_mask, do_values)
        if self.active("counterfactual") and pred_cf is not None:
            if target_cf is None:
                raise UserError("counterfactual_weight > 0 needs target_cf alongside pred_cf")
            out["counterfactual"] = counterfactual_loss(pred_cf, target_cf, cf_mask)
        if self.active("sparsity"):
            if sparse_weights is None:
                raise UserError("sparsity_weight > 0 needs sparse_weights (e.g. model.input_weights)")
            out["sparsity"] = sparsity_loss(sparse_weights)
        return out

    def forward(self, pred: Tensor, target: Tensor, **kwargs: Tensor | None) -> Tensor:
        """The weighted total of `terms(pred, target, **kwargs)` (a scalar)."""
        return self.combine(self.terms(pred, target, **kwargs))

    def combine(self, terms: dict[str, Tensor]) -> Tensor:
        """Weighted total of the given terms (names as in `weights`); missing terms count zero."""
        if not terms:
            raise UserError("no active loss term: give a weight > 0 (e.g. intervention_weight=1.0)")
        total = torch.zeros((), device=next(iter(terms.values())).device)
        for name, value in terms.items():
            total = total + self.weights[name] * value
        return total
