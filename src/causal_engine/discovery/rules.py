"""Config rules of the causal PFN (discovery): conf/data/scm_prior.yaml, conf/model/pfn_*.yaml, conf/task/discover.yaml.

Collected with every other system's rules in `causal_engine.run.RULES`; `causal_engine.config.validate` checks
them at start-up, so a bad value fails in the first second with its key.
"""

from __future__ import annotations

from causal_engine.config import Rule
from causal_engine.scm.graphs import GRAPH_TYPES

RULES: list[Rule] = [
    Rule("data.node_range", "list", length=2, item="int", low=2),
    Rule("data.curriculum_start", "list", length=2, item="int", low=2),
    Rule("data.curriculum_batches", "int", low=0),
    Rule("data.size_groups", "int", low=1),
    Rule("data.val_graphs", "int", low=1),
    Rule("data.test_graphs", "int", low=1),
    Rule("data.eval_batch_size", "int", low=1),
    Rule("data.eval_seed", "int", low=0, nullable=True),
    # data.prior is BroadPrior or SeedPrior: keys with the same meaning in both are checked here, the rest (mixes,
    # ranges) by the constructor, which names the key too (causal_engine.scm.prior.PriorError).
    Rule("data.prior.graph", "str", choices=GRAPH_TYPES),
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
]
