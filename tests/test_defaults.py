"""Each default lives in one place: a constructor default that the YAML also states has the YAML's value.

Config-built objects take their values from conf/; a Python caller relies on the constructor's defaults. The
two must not drift, so every `_target_` of ours in the base config files (the variant files, e.g. pfn_b or
mlp_nondesc, change some keys on purpose) is compared key by key with `inspect.signature`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

# (target, key) pairs whose YAML value is not the constructor's default, and why.
NOT_DEFAULTS = {
    # A label naming the model in tables and figures: each model file sets its own.
    ("causal_engine.intervene.module.InterveneModule", "name"),
    # None means "fall back to a built-in set"; the YAML spells out the prior and the evaluation sets.
    ("causal_engine.discovery.data.PFNDataModule", "prior"),
    ("causal_engine.discovery.data.PFNDataModule", "val_set"),
    ("causal_engine.discovery.data.PFNDataModule", "test_sets"),
    # Mixes are dicts, so their defaults are factories (equal weights, as the YAML spells out).
    ("causal_engine.scm.prior.BroadPrior", "mechanisms"),
    ("causal_engine.scm.prior.BroadPrior", "noises"),
    ("causal_engine.scm.prior.BroadPrior", "graphs"),
    # One stopping rule serves several fits: its defaults are plain early stopping (dml.convergence); task=query
    # sets a plateau schedule (learning-rate decays) because its answers settle only at a lower rate, started at
    # its own rate (the DML nuisances keep their modules' rates).
    ("causal_engine.convergence.Convergence", "patience"),
    ("causal_engine.convergence.Convergence", "decays"),
    ("causal_engine.convergence.Convergence", "lr"),
}

# Targets that pass keyword arguments (**kwargs) on: their keys take the defaults of these callables.
FORWARDS = {
    "causal_engine.dml.video.VideoConfoundedDataModule": (
        "causal_engine.dml.simulate.simulate_videos",
        "causal_engine.dml.video.VideoDataModule",
    ),
}

BASE_CONFIGS = [
    "data=scm_prior",
    "model=pfn_base",
    "data=intervene_zoo",
    "model=structural_mlp",
    "model=mlp",
    "model=causal_finetune",
    "data=table",
    "task=discover",
    "task=compare",
    "task=query",
    "task=finetune",
    "model=jepa",
    "data=video_confounded",
]


def targets(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, node) of every node with one of our `_target_`s, at any depth."""
    if isinstance(node, dict):
        if str(node.get("_target_", "")).startswith("causal_engine."):
            yield path, node
        for key, value in node.items():
            yield from targets(value, f"{path}.{key}")


def same(yaml_value: Any, default: Any) -> bool:
    """Equal, reading a YAML list as the tuple a signature would write (true/false never equal 1/0)."""
    if isinstance(default, tuple) and isinstance(yaml_value, list):
        yaml_value = tuple(yaml_value)
    return yaml_value == default and isinstance(yaml_value, bool) == isinstance(default, bool)


@pytest.mark.parametrize("override", BASE_CONFIGS)
def test_yaml_values_equal_constructor_defaults(compose, override: str) -> None:
    cfg = OmegaConf.to_container(compose([override]), resolve=False)
    group = override.split("=")[0]
    found = list(targets(cfg[group], group))
    assert found, f"{override} builds nothing of ours"
    drift = []
    for path, node in found:
        parameters = {}
        for name in (*FORWARDS.get(node["_target_"], ()), node["_target_"]):
            parameters |= inspect.signature(get_object(name)).parameters
        for key, value in node.items():
            param = parameters.get(key)
            if param is None or param.default is inspect.Parameter.empty:
                continue
            if (node["_target_"], key) in NOT_DEFAULTS or (isinstance(value, str) and "${" in value):
                continue
            if isinstance(value, dict) and "_target_" in value:
                continue
            if not same(value, param.default):
                drift.append(f"{path}.{key}: YAML {value!r}, {node['_target_']} default {param.default!r}")
    assert not drift, "defaults drifted:\n" + "\n".join(drift)


def test_the_checker_sees_drift() -> None:
    assert not same(0.2, 0.0) and not same(True, 1) and not same([10, 30], (10, 31)) and not same(None, 0)
    assert same([10, 30], (10, 30)) and same(None, None) and same("er", "er") and same(1, 1.0)
