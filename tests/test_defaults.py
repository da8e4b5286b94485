"""Each default lives in one place: the YAML for config-built objects. Where a Python API also has constructor
defaults (JEPAModule, the video DataModule, the simulator), they must equal the YAML's values."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from causal_engine.dml.simulate import simulate_videos
from causal_engine.dml.video import VideoConfoundedDataModule, VideoDataModule
from causal_engine.jepa.module import JEPAModule
from causal_engine.train import compose


def _plain(value: Any) -> Any:
    """Lists and tuples compare as tuples (YAML gives lists, signatures tuples)."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _literal_values(node: DictConfig) -> dict[str, Any]:
    """The node's keys with literal values: interpolations (`${seed}`) and required values (`???`) are set
    elsewhere and have no constructor default to agree with."""
    return {
        key: _plain(OmegaConf.to_container(node, resolve=False)[key])
        for key in node
        if not OmegaConf.is_interpolation(node, key) and not OmegaConf.is_missing(node, key)
    }


def _signature_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    return {
        name: _plain(p.default)
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize(
    ("overrides", "node", "constructors"),
    [
        (["model=jepa"], "model", [JEPAModule]),
        (["data=video_confounded"], "data", [VideoConfoundedDataModule, VideoDataModule, simulate_videos]),
    ],
    ids=["jepa", "video_confounded"],
)
def test_constructor_defaults_equal_the_yaml(overrides, node, constructors, tmp_path: Path) -> None:
    yaml_values = _literal_values(compose(overrides, tmp_path)[node])
    for fn in constructors:
        defaults = _signature_defaults(fn)
        shared = sorted(defaults.keys() & yaml_values.keys())
        assert shared, f"{fn.__name__} shares no key with conf/{node}"
        drift = {k: (defaults[k], yaml_values[k]) for k in shared if defaults[k] != yaml_values[k]}
        assert not drift, f"{fn.__name__} defaults differ from conf/{node} (default, yaml): {drift}"
