"""Config rules of double machine learning (dml): conf/dml/default.yaml and the video simulator, conf/data/video_*.yaml.

Collected with every other system's rules in `causal_engine.run.RULES`; `causal_engine.config.validate` checks
them at start-up, so a bad value fails in the first second with its key.
"""

from __future__ import annotations

from causal_engine.config import Rule
from causal_engine.dml.data import REPRESENTATIONS
from causal_engine.dml.learners import LEARNERS

RULES: list[Rule] = [
    Rule("dml.k_folds", "int", low=2),
    Rule("dml.n_rep", "int", low=1),
    Rule("dml.split_seed", "int", low=0),
    Rule("dml.score", "str", choices=("ate", "att", "plr")),
    Rule("dml.learner", "str", choices=LEARNERS),
    Rule("dml.trim", "float", low=0, high=0.5, low_open=True, high_open=True),
    Rule("dml.max_clipped_share", "float", low=0, high=1),
    Rule("dml.normalize", "bool"),
    Rule("dml.level", "float", low=0, high=1, low_open=True, high_open=True),
    Rule("dml.val_fraction", "float", low=0, high=0.5, low_open=True, high_open=True),
    Rule("dml.jepa_epochs", "int", low=1),
    Rule("dml.nuisance.*.hidden", "int", low=1),
    Rule("dml.nuisance.*.depth", "int", low=1),
    Rule("dml.nuisance.*.dropout", "float", low=0, high=1, high_open=True),
    Rule("dml.representation", "str", choices=REPRESENTATIONS),
    Rule("dml.pretrain", "str", choices=("per_fold", "once")),
    Rule("dml.sensitivity.cf_y", "float", low=0, high=1, high_open=True),
    Rule("dml.sensitivity.cf_d", "float", low=0, high=1, high_open=True),
    Rule("dml.sensitivity.rho", "float", low=-1, high=1),
    Rule("dml.sensitivity.benchmark", "list", item="str", nullable=True),
    Rule("dml.gate.groups", "str", nullable=True),
    Rule("dml.gate.quantiles", "int", low=2, nullable=True),
    Rule("dml.blp.covariates", "list", item="str", nullable=True),
    Rule("data.dims", "list", length=4, item="int", low=1),
    Rule("data.treatment_strength", "float", low=0),
    Rule("data.noise_sd", "float", low=0),
    Rule("data.pixel_noise", "float", low=0),
    Rule("data.texture_contrast", "float", low=0),
    Rule("data.motion", "float", low=0, high=0.5),
    Rule("data.spread", "float", low=0, high=0.5),
    Rule("data.distractor", "float"),
    Rule("data.hidden_confounder_strength", "float"),
]
