"""Config validation: the error-prone keys are checked before any work starts.

Hydra already rejects unknown keys and unknown group options (listing the available ones). What it
cannot know is that `k_folds: 1` or a negative learning rate is meaningless, or that a required
value was left as `???`. Those are checked here, against one list of rules, so that a bad command
fails in the first second with the key, the value and what is allowed, instead of an hour later
inside torch.

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
from causal_engine.jepa.module import ENCODERS, POOLS, TARGET_NORMS
from causal_engine.scm.zoo import ZOO as _ZOO


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


# Keys every system shares. Each room appends its own rules below its heading.
RULES: list[Rule] = [
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
    # discovery (causal PFN): conf/data/scm_prior.yaml, conf/model/pfn_*.yaml, conf/task/discover.yaml
    Rule("data.node_range", "list", length=2, item="int", low=2),
    Rule("data.curriculum_start", "list", length=2, item="int", low=2),
    Rule("data.curriculum_batches", "int", low=0),
    Rule("data.size_groups", "int", low=1),
    Rule("data.val_graphs", "int", low=1),
    Rule("data.test_graphs", "int", low=1),
    Rule("data.eval_batch_size", "int", low=1),
    # data.prior is BroadPrior or SeedPrior: keys with the same meaning in both are checked here, the rest (mixes,
    # ranges) by the constructor, which names the key too (causal_engine.scm.prior.PriorError).
    Rule("data.prior.graph", "str", choices=("er", "sf", "sw")),
    Rule("data.prior.edge_prob", "float", low=0, high=1, nullable=True),
    Rule("data.prior.obs_only_share", "float", low=0, high=1),
    Rule("data.prior.hetero_share", "float", low=0, high=1),
    Rule("data.prior.soft_share", "float", low=0, high=1),
    Rule("data.prior.multi_target_share", "float", low=0, high=1),
    Rule("data.prior.num_queries", "int", low=1),
    Rule("model.threshold", "float", low=0, high=1, low_open=True, high_open=True),
    Rule("model.net.d_model", "int", low=4),
    Rule("model.net.n_heads", "int", low=1),
    Rule("model.net.n_layers", "int", low=1),
    Rule("model.net.n_delta_layers", "int", low=1),
    Rule("model.net.max_nodes", "int", low=2),
    Rule("model.net.shrinkage", "float", low=0, high=1, low_open=True),
    Rule("model.net.feature_space", "str", choices=("zscore", "copula")),
    Rule("model.net.tau_start", "float", low=0, low_open=True),
    Rule("model.net.tau_end", "float", low=0, low_open=True),
    Rule("model.net.bias_scale", "float", low=0),
    Rule("model.loss.acyclic_warmup_steps", "int", low=0),
    Rule("model.loss.acyclic_ramp_steps", "int", low=1),
    Rule("task.threshold", "float", low=0, high=1, low_open=True, high_open=True),
    Rule("task.query_batch", "int", low=1),
    # causal fine-tuning (intervene): conf/data/intervene_zoo.yaml, conf/model/{causal_mlp,mlp}*.yaml,
    # conf/task/query.yaml
    Rule("data.scm", "str", choices=tuple(sorted(_ZOO))),
    Rule("data.n_train", "int", low=10),
    Rule("data.interventional_fraction", "float", low=0, high=1, high_open=True),
    Rule("data.counterfactual_fraction", "float", low=0, high=1),
    Rule("data.intervention_value", "float", nullable=True),
    Rule("data.cf_shift", "float"),
    Rule("data.n_test", "int", low=10),
    Rule("data.n_quantiles", "int", low=2),
    Rule("data.n_mmd", "int", low=2),
    Rule("model.net.hidden_dims", "list", item="int", low=1),
    Rule("model.net.features", "str", choices=("all", "nondescendants")),
    Rule("model.losses.*_weight", "float", low=0),
    Rule("task.val_fraction", "float", low=0, high=1, low_open=True, high_open=True),
    # jepa-dml: conf/dml/default.yaml, conf/data/video_*.yaml, conf/model/jepa.yaml
    Rule("dml.k_folds", "int", low=2),
    Rule("dml.n_rep", "int", low=1),
    Rule("dml.split_seed", "int", low=0),
    Rule("dml.score", "str", choices=("ate", "att", "plr")),
    Rule("dml.trim", "float", low=0, high=0.5, low_open=True, high_open=True),
    Rule("dml.max_clipped_share", "float", low=0, high=1),
    Rule("dml.normalize", "bool"),
    Rule("dml.level", "float", low=0, high=1, low_open=True, high_open=True),
    Rule("dml.val_fraction", "float", low=0, high=0.5, low_open=True, high_open=True),
    Rule("dml.jepa_epochs", "int", low=1),
    Rule("dml.nuisance_epochs", "int", low=1),
    Rule("dml.nuisance.*.hidden", "int", low=1),
    Rule("dml.nuisance.*.depth", "int", low=1),
    Rule("dml.nuisance.*.dropout", "float", low=0, high=1, high_open=True),
    Rule("data.dims", "list", length=4, item="int", low=1),
    Rule("data.treatment_strength", "float", low=0),
    Rule("data.noise_sd", "float", low=0),
    Rule("data.pixel_noise", "float", low=0),
    Rule("data.texture_contrast", "float", low=0),
    Rule("data.motion", "float", low=0, high=0.5),
    Rule("data.spread", "float", low=0, high=0.5),
    Rule("data.distractor", "float"),
    Rule("model.rep_dim", "int", low=6),
    Rule("model.tubelet", "list", length=3, item="int", low=1),
    Rule("model.ema", "list", length=2, item="float", low=0, high=1),
    Rule("model.block_scale", "list", length=2, item="float", low=0, high=1, low_open=True, high_open=True),
    Rule("model.pool", "str", choices=POOLS),
    Rule("model.embed_from", "list", item="str", choices=ENCODERS),
    Rule("model.target_norm", "str", choices=TARGET_NORMS),
    Rule("model.xy_temperature", "float", low=0, low_open=True),
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


def validate(cfg: DictConfig, rules: Sequence[Rule] = RULES) -> None:
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
