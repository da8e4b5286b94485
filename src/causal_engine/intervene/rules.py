"""Config rules of causal fine-tuning (intervene): conf/data/intervene_zoo.yaml,
conf/model/{structural_mlp,mlp,causal_finetune}*.yaml, conf/task/query.yaml.

Collected with every other system's rules in `causal_engine.run.RULES`; `causal_engine.config.validate` checks
them at start-up, so a bad value fails in the first second with its key.
"""

from __future__ import annotations

from causal_engine.config import Rule
from causal_engine.intervene.zoo import ZOO

RULES: list[Rule] = [
    Rule("data.scm", "str", choices=tuple(sorted(ZOO))),
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
    Rule("task.bootstrap", "int", low=0),
    Rule("task.level", "float", low=0, high=1, low_open=True, high_open=True),
    Rule("task.discovery.threshold", "float", low=0, high=1, low_open=True, high_open=True),
    Rule("task.discovery.steps", "int", low=0),
    Rule("task.discovery.lr", "float", low=0, low_open=True),
    Rule("task.discovery.*_weight", "float", low=0),
    Rule("task.discovery.explain_dependences", "bool"),
]
