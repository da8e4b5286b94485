"""Config errors fail before any work, naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from causal_engine.config import ConfigError, Rule, check_value, validate
from causal_engine.run import RULES, run


def test_missing_required_value_names_the_key(compose):
    cfg = compose(["data=table"])
    with pytest.raises(ConfigError, match=r"Missing required config value\(s\): data.path"):
        validate(cfg, RULES)


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("data: {num_nodes: 0}", r"'data.num_nodes' = 0 is too small; it must be an integer >= 1"),
        ("model: {optimizer: {lr: -0.001}}", r"'model.optimizer.lr' = -0.001 is too small; it must be a number > 0"),
        ("model: {optimizer: {lr: fast}}", r"'model.optimizer.lr' = 'fast' is not a number"),
        ("data: {batch_size: 2.5}", r"'data.batch_size' = 2.5 is not an integer"),
        ("seed: -1", r"'seed' = -1 is too small"),
        ("monitor_mode: up", r"'monitor_mode' = 'up' is not an allowed choice; it must be a string one of"),
        ("trainer: {devices: 0}", r"'trainer.devices' = 0 is too small"),
        ("model: {embed_from: [target, context]}", r"'model.embed_from' = \['target', 'context'\] is not an allowed"),
        ("model: {target_norm: layer}", r"'model.target_norm' = 'layer' is not an allowed choice"),
        ("model: {xy_temperature: 0}", r"'model.xy_temperature' = 0 is too small; it must be a number > 0"),
    ],
)
def test_bad_values_are_reported_with_key_value_and_rule(yaml, message):
    with pytest.raises(ConfigError, match=message):
        validate(OmegaConf.create(yaml), RULES)


def test_rules_ignore_absent_keys_and_accept_good_values():
    validate(OmegaConf.create("seed: 3\nmodel: {optimizer: {lr: 0.01}}\ndata: {num_nodes: 5}"), RULES)


def test_list_rule_checks_length_and_items():
    rule = Rule("data.dims", "list", length=4, item="int", low=1)
    check_value(rule, "data.dims", [1, 8, 16, 16])
    with pytest.raises(ConfigError, match="has 3 items; it must be a list of length 4 of ints >= 1"):
        check_value(rule, "data.dims", [1, 8, 16])
    with pytest.raises(ConfigError, match="is too small"):
        check_value(rule, "data.dims", [1, 0, 16, 16])


def test_validation_runs_before_the_task(compose):
    cfg = compose(["data=table", "seed=-5", "data.path=x.csv"])
    with pytest.raises(ConfigError, match="'seed' = -5"):
        run(cfg)


def test_unknown_group_option_lists_the_available_ones(compose):
    with pytest.raises(ConfigCompositionException, match="Available options"):
        compose(["trainer=nope"])


def test_unknown_key_is_rejected(compose):
    with pytest.raises(ConfigCompositionException, match="not_a_key"):
        compose(["not_a_key=1"])
