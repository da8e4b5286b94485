"""Config rules of the video JEPA (jepa): conf/model/jepa.yaml.

Collected with every other system's rules in `causal_engine.run.RULES`; `causal_engine.config.validate` checks
them at start-up, so a bad value fails in the first second with its key.
"""

from __future__ import annotations

from causal_engine.config import Rule
from causal_engine.jepa.module import ENCODERS, POOLS, TARGET_NORMS

RULES: list[Rule] = [
    Rule("model.rep_dim", "int", low=6),
    Rule("model.tubelet", "list", length=3, item="int", low=1),
    Rule("model.ema", "list", length=2, item="float", low=0, high=1),
    Rule("model.block_scale", "list", length=2, item="float", low=0, high=1, low_open=True, high_open=True),
    Rule("model.pool", "str", choices=POOLS),
    Rule("model.embed_from", "list", item="str", choices=ENCODERS),
    Rule("model.target_norm", "str", choices=TARGET_NORMS),
    Rule("model.xy_temperature", "float", low=0, low_open=True),
]
