"""The do-operator as a module: interventions as data, and the unit that applies them to a layer or a node.

Semantics: under do(X = v) only the mechanism *into* X is cut (detaching X's parents as well is a common
mistake). The replaced value carries no gradient back into X's mechanism or into X's parents through that mechanism
(`torch.where` routes the gradient of the masked rows to the constant, not to the natural value), and X's
own conditional is left out of the loss (see `Interventions.cut_mask`). X's parents are *not* detached:
they keep the gradients from their other children. A shift intervention do(X := X + δ) is soft: the
mechanism stays, so gradients flow through it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from causal_engine.errors import UserError
from causal_engine.interventions import Intervention, parse_interventions


@dataclass(frozen=True)
class NodeIntervention(Intervention):
    """One node's intervention (`causal_engine.interventions.Intervention`) that can be applied to a batch.

    `value` is a float, a per-row tensor [B], or a function of the unit's current variables x [B, D] -> [B]
    (a conditional intervention, e.g. a policy X := g(Z); in an ancestral rollout only variables of earlier
    topological generations are filled when X is computed, so g should read X's non-descendants computed
    before it); `mask` [B] bool selects the rows (None = all).
    """

    def resolve(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """(value [B], rows [B] bool) for a batch whose current variables are `context` [B, D]."""
        batch = context.shape[0]
        if callable(self.value):
            value = self.value(context)
        else:
            value = torch.as_tensor(self.value, dtype=context.dtype, device=context.device)
        value = value.expand(batch) if value.dim() == 0 else value  # [B]
        if value.shape != (batch,):
            raise ValueError(f"intervention value has shape {tuple(value.shape)}, expected ({batch},)")
        rows = torch.ones(batch, dtype=torch.bool, device=context.device) if self.mask is None else self.mask
        return value, rows.to(context.device)


@dataclass
class Interventions:
    """A set of interventions on several nodes of a `num_nodes`-variable unit (node index -> intervention)."""

    num_nodes: int
    nodes: dict[int, NodeIntervention] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in self.nodes:
            if not 0 <= node < self.num_nodes:
                raise ValueError(f"intervened node {node} is outside 0..{self.num_nodes - 1}")

    @classmethod
    def none(cls, num_nodes: int) -> Interventions:
        """The null intervention: every model must reproduce the factual under it."""
        return cls(num_nodes)

    @classmethod
    def from_tensors(cls, mask: Tensor, values: Tensor) -> Interventions:
        """Per-row hard interventions from a data batch: mask [B, D] bool, values [B, D]."""
        nodes = {int(j): NodeIntervention("hard", values[:, j], mask[:, j]) for j in mask.any(0).nonzero().flatten()}
        return cls(mask.shape[1], nodes)

    @classmethod
    def parse(cls, spec: Interventions | Mapping | None, names: Sequence[str]) -> Interventions:
        """An `Interventions` from the grammar of `causal_engine.interventions` (`{"x1": 0.5}`,
        `{"x1": {"shift": 1.0}}`, `{"x1": fn}`, integer keys, an optional `mask`), or itself."""
        if isinstance(spec, Interventions):
            return spec
        nodes = parse_interventions(spec, names)
        return cls(len(names), {node: NodeIntervention(iv.kind, iv.value, iv.mask) for node, iv in nodes.items()})

    def cut_mask(self, batch: int, device: torch.device | None = None) -> Tensor:
        """[B, D] bool: rows × nodes whose mechanism is cut (hard interventions). Their conditionals are
        left out of the loss and the edges into them are masked."""
        cut = torch.zeros(batch, self.num_nodes, dtype=torch.bool, device=device)
        for node, spec in self.nodes.items():
            if spec.kind == "hard":
                cut[:, node] = True if spec.mask is None else spec.mask.to(device)
        return cut

    def touched_mask(self, batch: int, device: torch.device | None = None) -> Tensor:
        """[B, D] bool: rows × nodes with any intervention (hard or shift)."""
        touched = torch.zeros(batch, self.num_nodes, dtype=torch.bool, device=device)
        for node, spec in self.nodes.items():
            touched[:, node] = True if spec.mask is None else spec.mask.to(device)
        return touched

    def __bool__(self) -> bool:
        return bool(self.nodes)


def as_layer_mask(tensor: Tensor, h: Tensor, field_name: str) -> Tensor:
    """A do-mask or do-values tensor [W] or [B, W] checked against a layer h [B, W] and broadcast to [B, W]."""
    batch, width = h.shape
    if tensor.dim() not in (1, 2) or tensor.shape[-1] != width or (tensor.dim() == 2 and len(tensor) != batch):
        raise UserError(
            f"{field_name} has shape {tuple(tensor.shape)}, but the layer it intervenes on is [{batch}, {width}]: "
            f"give [{width}] (every row) or [{batch}, {width}] (per row)"
        )
    return tensor.to(h.device).expand(batch, width)


class CausalUnit(nn.Module):
    """do(h_i = v) on a layer: replaces the masked units of h with their set values; the rest pass through.

    `torch.where` gives the replaced entries no gradient path to h, so on the masked rows neither the unit
    that was replaced nor anything that computed it (the weights into it, the inputs below it) learns
    through that unit; every other path is untouched. The values carry whatever gradient they have (a
    constant has none; a shift X := X + δ, built from the natural value, keeps its mechanism).

    With `record_history`, each application appends one record to a deque bounded at `max_history`:
    `{"step", "layer", "units", "rows", "values"}` — the owner's forward-pass counter `step` (the owning
    network advances it once per pass, so records of one pass share it), the layer key, the intervened unit
    indices, the number of rows intervened, and each unit's mean set value over its rows.
    """

    def __init__(self, record_history: bool = False, max_history: int = 1000) -> None:
        super().__init__()
        if max_history < 1:
            raise UserError(f"max_history must be >= 1, got {max_history}")
        self.record_history = record_history
        self.history: deque[dict[str, Any]] = deque(maxlen=max_history)
        self.step = 0

    def forward(
        self,
        h: Tensor,
        do_mask: Tensor | None = None,
        do_values: Tensor | None = None,
        layer: int = 0,
        units: Sequence[int] | None = None,
    ) -> Tensor:
        """h [B, W]; do_mask (bool or 0/1) and do_values [W] or [B, W] -> [B, W] with the masked entries set.

        `units` names h's columns in the history (default 0..W−1).
        """
        if do_mask is None:
            return h
        if do_values is None:
            raise UserError("an intervention needs both do_mask and do_values; do_values is missing")
        mask = as_layer_mask(do_mask, h, "do_mask")
        if mask.dtype != torch.bool:
            if not torch.all((mask == 0) | (mask == 1)):
                raise UserError("do_mask must hold 0/1 (or bool): 1 marks an intervened unit")
            mask = mask != 0
        values = as_layer_mask(do_values, h, "do_values").to(h.dtype)
        out = torch.where(mask, values, h)  # [B, W]
        if self.record_history and mask.any():
            hit = mask.any(0).nonzero().flatten()  # [U]
            sums = (out.detach() * mask)[:, hit].sum(0)
            counts = mask[:, hit].sum(0)
            labels = list(range(h.shape[1])) if units is None else list(units)
            self.history.append(
                {
                    "step": self.step,
                    "layer": layer,
                    "units": [labels[i] for i in hit.tolist()],
                    "rows": int(mask.any(1).sum()),
                    "values": (sums / counts).tolist(),
                }
            )
        return out

    def apply(self, natural: Tensor, node: int, context: Tensor, interventions: Interventions) -> Tensor:
        """A structural node's value [B] from its natural value [B] (what its mechanism would produce) under
        `interventions`; context [B, D] are the unit's current variables (for conditional values)."""
        spec = interventions.nodes.get(node)
        if spec is None:
            return natural
        value, rows = spec.resolve(context)
        if spec.kind == "shift":
            value = natural + value  # soft: the mechanism stays in the graph and keeps its gradient
        return self(natural[:, None], rows[:, None], value[:, None], units=[node])[:, 0]


def history_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """`CausalUnit` history records as a markdown table (one line per record) for TensorBoard's text tab."""
    lines = ["| step | layer | units | rows | mean set values |", "|---|---|---|---|---|"]
    for r in records:
        values = ", ".join(f"{v:.4g}" for v in r["values"])
        lines.append(f"| {r['step']} | {r['layer']} | {r['units']} | {r['rows']} | {values} |")
    return "\n".join(lines)
