"""The seed's `CausalMLP`: a plain MLP whose forward pass takes do(h = v) at any layer.

    model = CausalMLP(input_dim=3, hidden_dims=[16, 16], output_dim=1)
    y = model(x, interventions={0: (do_mask, do_values)})  # do(x2 = 0.5) with mask [0, 1, 0], values [0, .5, 0]

Layer keys: 0 is the input x, k (1..len(hidden_dims)) is the output of hidden layer k (after its
activation). Mask and values are [width] (every row) or [batch, width] (per row). A `CausalUnit` does the
replacement, so a replaced unit is a constant: no gradient reaches the replaced input column or the weights
that computed a replaced hidden unit through it. This network knows no graph: substituting an input leaves
the other inputs at their observed values, which is the do-operator only when none of them is a descendant
of the intervened one (see docs/intervene.md, "Which model"). The structural model is `StructuralMLP`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from torch import Tensor, nn

from causal_engine.errors import UserError
from causal_engine.intervene.do import CausalUnit

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
LayerInterventions = Mapping[int, tuple[Tensor, Tensor]]


class CausalMLP(nn.Module):
    """Linear → activation blocks with a do-operator between them.

    Args:
        input_dim: width of x.
        hidden_dims: widths of the hidden layers (layer keys 1..len(hidden_dims)).
        output_dim: width of the prediction.
        activation: "relu", "silu" or "tanh".
        record_history: keep a record of every intervention applied (see `history`).
        max_history: how many records to keep (oldest dropped first).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int] = (32, 32),
        output_dim: int = 1,
        activation: str = "silu",
        record_history: bool = False,
        max_history: int = 1000,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.widths = [input_dim, *hidden_dims]
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in pairwise([*self.widths, output_dim]))
        self.activation = ACTIVATIONS[activation]()
        self.unit = CausalUnit(record_history, max_history)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The intervention records, oldest first: step (forward pass), layer, units, rows, mean values."""
        return list(self.unit.history)

    @property
    def input_weights(self) -> Tensor:
        """First-layer weights [hidden_dims[0] or output_dim, input_dim]: what `sparsity_loss` shrinks."""
        return self.layers[0].weight

    def forward(self, x: Tensor, interventions: LayerInterventions | None = None) -> Tensor:
        """x [B, input_dim] -> [B, output_dim], with do(h_k = v) applied at each layer key k given."""
        interventions = dict(interventions or {})
        unknown = sorted(set(interventions) - set(range(len(self.widths))))
        if unknown:
            raise UserError(
                f"interventions name layer(s) {unknown}; this CausalMLP has layers 0 (the inputs) to "
                f"{len(self.widths) - 1} (hidden layer outputs)"
            )
        self.unit.step += 1
        h = x  # [B, input_dim]
        for k, linear in enumerate(self.layers):
            h = self.unit(h, *interventions.get(k, (None, None)), layer=k)  # [B, widths[k]]
            h = linear(h)
            if k < len(self.layers) - 1:
                h = self.activation(h)
        return h  # [B, output_dim]
