"""Config validation: the error-prone keys are checked before any work starts.

Hydra already rejects unknown keys and unknown group options (listing the available ones). What it
cannot know is that `k_folds: 1` or a negative learning rate is meaningless, or that a required
value was left as `???`. Those are checked here, against a list of rules, so that a bad command
fails in the first second with the key, the value and what is allowed, instead of an hour later
inside torch. This module is the mechanism and imports no model code: each system declares the rules of
its own keys in its package, and `causal_engine.run.RULES` gathers them.

Rules are matched against dotted keys with shell-style patterns (`*.lr` matches `model.optimizer.lr`);
a rule whose key is absent from the composed config does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from causal_engine.errors import UserError


def source_root() -> Path:
    """The causal-engine source tree (the directory holding conf/, checkpoints/ and src/)."""
    return Path(__file__).resolve().parents[2]


# `${ce.root:}` in conf/paths: shipped files are found wherever the command is run from.
OmegaConf.register_new_resolver("ce.root", lambda: str(source_root()), replace=True)


class ConfigError(UserError):
    """The composed config is invalid; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """What one key (or key pattern) may hold.

    kind: "int", "float" (ints accepted), "bool", "str", "list".
    low/high: bounds (inclusive unless low_open/high_open). choices: allowed values.
    length: exact list length; item: the kind of each list item (bounds apply to each item).
    nullable: whether null is allowed.
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] | None = None
    length: int | None = None
    item: str | None = None
    nullable: bool = False

    def allowed(self) -> str:
        kind = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "list": "a list"}[
            self.kind
        ]
        parts = [kind]
        if self.length is not None:
            parts.append(f"of length {self.length}")
        if self.item is not None:
            parts.append(f"of {self.item}s")
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if self.choices is not None:
            parts.append(f"one of {list(self.choices)}")
        if self.nullable:
            parts.append("or null")
        return " ".join(parts)


# Keys every system shares (seed, trainer, optimiser and loader knobs). Each system keeps its own rules beside
# its code (`discovery/rules.py`, `intervene/rules.py`, `jepa/rules.py`, `dml/rules.py`); `run.py` collects them.
COMMON_RULES: list[Rule] = [
    Rule("seed", "int", low=0),
    Rule("monitor_mode", "str", choices=("min", "max")),
    Rule("trainer.max_epochs", "int", low=-1, nullable=True),
    Rule("trainer.max_steps", "int", low=-1),
    Rule("trainer.devices", "int", low=1),
    Rule("trainer.num_nodes", "int", low=1),
    Rule("trainer.accelerator", "str", choices=("cpu", "gpu", "cuda", "mps", "tpu", "auto")),
    Rule("trainer.gradient_clip_val", "float", low=0, nullable=True),
    Rule("*.lr", "float", low=0, low_open=True),
    Rule("*.weight_decay", "float", low=0),
    Rule("*.batch_size", "int", low=1),
    Rule("*.num_workers", "int", low=0),
    Rule("*.num_nodes", "int", low=1),
    Rule("*.n_samples", "int", low=1),
    # causal_engine.convergence.Convergence wherever a task configures one (task.convergence, ...)
    Rule("*.convergence.patience", "int", low=1),
    Rule("*.convergence.decays", "int", low=0),
    Rule("*.convergence.factor", "float", low=0, low_open=True, high=1, high_open=True),
    Rule("*.convergence.max_steps", "int", low=1),
    Rule("*.convergence.min_epochs", "int", low=1),
    Rule("*.convergence.max_epochs", "int", low=2, nullable=True),
    Rule("*.convergence.min_delta", "float", low=0),
]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scalar(rule: Rule, kind: str, key: str, value: Any) -> str | None:
    """None when `value` satisfies `kind` and the bounds, else the reason."""
    if kind == "int" and not _is_int(value):
        return "is not an integer"
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "is not a number"
    if kind == "float" and not math.isfinite(value):
        return "is not finite"
    if kind == "bool" and not isinstance(value, bool):
        return "is not true/false"
    if kind == "str" and not isinstance(value, str):
        return "is not a string"
    if rule.choices is not None and value not in rule.choices:
        return "is not an allowed choice"
    if kind in ("int", "float"):
        if rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)):
            return "is too small"
        if rule.high is not None and (value > rule.high or (rule.high_open and value == rule.high)):
            return "is too large"
    return None


def check_value(rule: Rule, key: str, value: Any) -> None:
    """Raise ConfigError when `value` at `key` breaks `rule`."""
    if value is None:
        if rule.nullable:
            return
        raise ConfigError(f"Config key '{key}' is null; it must be {rule.allowed()}. Set it, e.g. `{key}=...`.")
    if rule.kind == "list":
        if not isinstance(value, list | tuple):
            problem = "is not a list"
        elif rule.length is not None and len(value) != rule.length:
            problem = f"has {len(value)} items"
        else:
            problem = next((p for v in value if (p := _check_scalar(rule, rule.item or "float", key, v))), None)
    else:
        problem = _check_scalar(rule, rule.kind, key, value)
    if problem is not None:
        raise ConfigError(f"Config key '{key}' = {value!r} {problem}; it must be {rule.allowed()}.")


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys of every value in the config (lists are single values), without resolving anything."""
    if isinstance(node, DictConfig):
        for key in node:
            child = node._get_node(key)
            path = f"{prefix}{key}"
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                yield from _leaves(child, f"{path}.")
            else:
                yield path


def validate(cfg: DictConfig, rules: Sequence[Rule]) -> None:
    """Check missing values (`???`) and every rule that matches a key; raise ConfigError on the first problem."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        examples = " ".join(f"{k}=..." for k in missing)
        raise ConfigError(
            f"Missing required config value(s): {', '.join(missing)}. Give them on the command "
            f"line, e.g. `causal-engine ... {examples}`."
        )
    for key in _leaves(cfg):
        if key.startswith("hydra."):
            continue
        for rule in rules:
            if fnmatchcase(key, rule.key):
                value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
                if isinstance(value, ListConfig | DictConfig):
                    value = OmegaConf.to_container(value, resolve=True)
                check_value(rule, key, value)
