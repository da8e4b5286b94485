"""The do-operator as a module: interventions as data, and the unit that applies them to one node.

Semantics (and the seed's mistake, fixed): under do(X = v) only the mechanism *into* X is cut. The replaced
value carries no gradient back into X's mechanism or into X's parents through that mechanism
(`torch.where` routes the gradient of the masked rows to the constant, not to the natural value), and X's
own conditional is left out of the loss (see `Interventions.cut_mask`). X's parents are *not* detached:
they keep the gradients from their other children. A shift intervention do(X := X + δ) is soft: the
mechanism stays, so gradients flow through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

Kind = Literal["hard", "shift"]
# A conditional intervention: the value is a function of the unit's other variables, x [B, D] -> [B].
ValueFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class NodeIntervention:
    """One node's intervention: `kind` hard (X := value) or shift (X := X + value), on the rows in `mask`.

    `value` is a float, a per-row tensor [B], or a function of the unit's current variables x [B, D] -> [B]
    (a conditional intervention, e.g. a policy X := g(Z); in an ancestral rollout only variables of earlier
    topological generations are filled when X is computed, so g should read X's non-descendants computed
    before it); `mask` [B] bool selects the rows (None = all).
    """

    kind: Kind
    value: float | Tensor | ValueFn
    mask: Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("hard", "shift"):
            raise ValueError(f"intervention kind must be 'hard' or 'shift', got {self.kind!r}")

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
        """Accept `{"x1": 0.5}`, `{"x1": {"shift": 1.0}}`, `{"x1": fn}`, integer keys, or `Interventions`.

        A number or tensor means hard; a mapping with exactly one of `value`/`shift` picks the kind (plus
        an optional `mask`); a callable is a conditional hard intervention.
        """
        if isinstance(spec, Interventions):
            return spec
        out = cls(len(names))
        for key, item in (spec or {}).items():
            if isinstance(key, str):
                if key not in names:
                    raise ValueError(f"intervention on unknown variable {key!r}; known: {list(names)}")
                node = names.index(key)
            else:
                node = int(key)
            if isinstance(item, NodeIntervention):
                out.nodes[node] = item
            elif isinstance(item, Mapping):
                kinds = [k for k in ("value", "shift") if k in item]
                if len(kinds) != 1 or set(item) - {"value", "shift", "mask"}:
                    raise ValueError(
                        f"intervention on {key!r} must give exactly one of 'value' or 'shift' (and optionally "
                        f"'mask'), got keys {sorted(item)}"
                    )
                kind: Kind = "hard" if kinds[0] == "value" else "shift"
                out.nodes[node] = NodeIntervention(kind, item[kinds[0]], item.get("mask"))
            else:
                out.nodes[node] = NodeIntervention("hard", item)
        out.__post_init__()
        return out

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


class CausalUnit(nn.Module):
    """Applies a node's intervention to its natural value (the value its mechanism would produce).

    Hard: X := v on the masked rows; `torch.where` sends no gradient to the natural value there, so neither
    X's mechanism nor X's parents (through that mechanism) learn from anything downstream of X on those
    rows. Shift: X := natural + δ, gradients flow (the mechanism is kept). With `record_history`, every
    application is logged (node, kind, number of rows, mean value) for inspection.
    """

    def __init__(self, record_history: bool = False) -> None:
        super().__init__()
        self.record_history = record_history
        self.history: list[dict[str, float | int | str]] = []

    def forward(self, natural: Tensor, node: int, context: Tensor, interventions: Interventions) -> Tensor:
        """natural [B], context [B, D] (the unit's current variables) -> the node's value [B]."""
        spec = interventions.nodes.get(node)
        if spec is None:
            return natural
        value, rows = spec.resolve(context)
        out = torch.where(rows, value, natural) if spec.kind == "hard" else torch.where(rows, natural + value, natural)
        if self.record_history:
            self.history.append(
                {
                    "node": node,
                    "kind": spec.kind,
                    "rows": int(rows.sum()),
                    "mean_value": float(out.detach()[rows].mean()) if rows.any() else float("nan"),
                }
            )
        return out
