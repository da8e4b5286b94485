"""Shared fixtures: compose the real Hydra configs and run them in a temporary output directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from causal_engine.run import CONFIG_DIR, run

# One intra-op thread: the tests run many small kernels, and with more runnable threads than cores (a shared
# machine, pytest beside other jobs) torch's thread pool waits on descheduled workers and tests that take a
# second take minutes. Subprocess tests (DDP, the CLI) start their own interpreters and are not affected.
torch.set_num_threads(1)


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose `conf/config.yaml` with `overrides` as the command line would, writing into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir.parent)
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def compose(tmp_path: Path) -> Callable[[list[str]], DictConfig]:
    """compose(overrides) -> config, with the run directory in a fresh temporary folder."""
    return lambda overrides: compose_config(list(overrides), tmp_path / "run")


@pytest.fixture
def run_experiment(compose: Callable[[list[str]], DictConfig]) -> Callable[[list[str]], dict[str, Any]]:
    """run_experiment(overrides) -> metrics: compose and run exactly as `causal-engine` does."""
    return lambda overrides: run(compose(overrides))
