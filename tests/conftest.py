"""Shared fixtures: compose the real Hydra configs and run them in a temporary output directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig

from causal_engine.run import run
from causal_engine.train import compose as compose_config

# One intra-op thread: the tests run many small kernels, and with more runnable threads than cores (a shared
# machine, pytest beside other jobs) torch's thread pool waits on descheduled workers and tests that take a
# second take minutes. Subprocess tests (DDP, the CLI) start their own interpreters and are not affected.
torch.set_num_threads(1)


@pytest.fixture
def compose(tmp_path: Path) -> Callable[[list[str]], DictConfig]:
    """compose(overrides) -> config, with the run directory in a fresh temporary folder."""
    return lambda overrides: compose_config(list(overrides), tmp_path / "run")


@pytest.fixture
def run_experiment(compose: Callable[[list[str]], DictConfig]) -> Callable[[list[str]], dict[str, Any]]:
    """run_experiment(overrides) -> metrics: compose and run exactly as `causal-engine` does."""
    return lambda overrides: run(compose(overrides))
