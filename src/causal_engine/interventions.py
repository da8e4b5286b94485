"""The one intervention grammar, shared by every task and by the Python API.

An intervention set maps variables to what is done to them:

    {x: 1.0}                  hard: do(x := 1.0)
    {x: {value: 1.0}}         the same, spelled out
    {x: {shift: 0.5}}         shift: do(x := x + 0.5), the mechanism into x stays
    {x: 1.0, z: {shift: -1}}  several variables at once

A task takes a *named map* of such sets under its own config node, one entry per question, e.g.
`task.interventional={raise_x: {x: 1.0}, nudge_x: {x: {shift: 0.5}}}`. From Python the same dictionaries are
accepted, and three things only code can give: a per-row tensor [B] or a function of the current variables
x [B, D] -> [B] as the value, and a `mask` [B] bool choosing the rows.

This module only checks and normalises the grammar into plain `Intervention` records keyed by column index;
each system turns them into its own tensors (intervene's `Interventions`, discovery's query rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from causal_engine.errors import UserError

Kind = Literal["hard", "shift"]
_EXAMPLE = "{x: 1.0} (hard), {x: {value: 1.0}} or {x: {shift: 0.5}}"


class InterventionError(UserError):
    """An intervention is not written in the grammar; the message names where and shows the accepted forms."""


@dataclass(frozen=True)
class Intervention:
    """One variable's intervention: `kind` hard (X := value) or shift (X := X + value), on the rows in `mask`.

    `value` is a float from a config, or from Python also a per-row tensor [B] or a function x [B, D] -> [B];
    `mask` is None (every row) or a [B] bool tensor.
    """

    kind: Kind
    value: float | Any | Callable[[Any], Any]
    mask: Any = None

    def __post_init__(self) -> None:
        if self.kind not in ("hard", "shift"):
            raise InterventionError(f"intervention kind must be 'hard' or 'shift', got {self.kind!r}")


def _value(value: Any, where: str) -> Any:
    """A finite float, or (Python API) a tensor/array or a callable, unchanged."""
    if callable(value) or hasattr(value, "shape"):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InterventionError(f"{where} must be a finite number, e.g. {_EXAMPLE}; got {value!r}")
    return float(value)


def _mask(mask: Any, where: str) -> Any:
    if mask is not None and not hasattr(mask, "shape"):
        raise InterventionError(f"{where}.mask must be a [B] bool tensor (Python only), got {mask!r}")
    return mask


def parse_interventions(
    spec: Mapping[Any, Any] | None, names: Sequence[str], where: str = "interventions"
) -> dict[int, Intervention]:
    """Column index -> `Intervention` from `{variable: value | {value: v} | {shift: d}}` (see the module doc).

    Keys are variable names from `names` (or, from Python, column indices). `where` names the config key in
    error messages, e.g. `task.interventional.raise_x`.
    """
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise InterventionError(f"{where} must map variables to interventions, e.g. {_EXAMPLE}; got {spec!r}")
    out: dict[int, Intervention] = {}
    for key, item in spec.items():
        if isinstance(key, str):
            if key not in names:
                raise InterventionError(
                    f"{where} intervenes on {key!r}, which is not a variable of the data; variables: {list(names)}"
                )
            node = names.index(key)
        elif isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(names):
            node = key
        else:
            raise InterventionError(f"{where}: intervened node {key!r} is outside 0..{len(names) - 1}")
        at = f"{where}.{key}"
        if isinstance(item, Intervention):
            out[node] = item
        elif isinstance(item, Mapping):
            kinds = [k for k in ("value", "shift") if k in item]
            if len(kinds) != 1 or set(item) - {"value", "shift", "mask"}:
                raise InterventionError(
                    f"{at} must give exactly one of 'value' or 'shift' (and, from Python, an optional 'mask'), "
                    f"got keys {sorted(item)}"
                )
            kind: Kind = "hard" if kinds[0] == "value" else "shift"
            out[node] = Intervention(kind, _value(item[kinds[0]], f"{at}.{kinds[0]}"), _mask(item.get("mask"), at))
        else:
            out[node] = Intervention("hard", _value(item, at))
    return out


def parse_named_interventions(
    queries: Mapping[Any, Any] | None, names: Sequence[str], where: str
) -> dict[str, dict[int, Intervention]]:
    """Query name -> parsed intervention set, from a task's named map `{name: {variable: ...}}`.

    An empty set is an error: a question that intervenes on nothing is almost always a typo.
    """
    if queries is None:
        return {}
    if not isinstance(queries, Mapping):
        raise InterventionError(
            f"{where} must map a query name to interventions, e.g. {{raise_{names[0]}: {{{names[0]}: 1.0}}}}; "
            f"got {queries!r}"
        )
    parsed = {}
    for name, spec in queries.items():
        if not isinstance(spec, Mapping) or not spec:
            raise InterventionError(
                f"{where}.{name} must map variables to interventions, e.g. {_EXAMPLE}; got {spec!r}"
            )
        parsed[str(name)] = parse_interventions(spec, names, f"{where}.{name}")
    return parsed
