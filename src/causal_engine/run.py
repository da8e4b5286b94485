"""The one entry point: `causal-engine experiment=NAME key=value ...` (or `python -m causal_engine`).

`main` is thin: Hydra composes the config, `run` validates it, seeds everything, calls the task
(`cfg.task` is a partial function `task(cfg) -> metrics`), and leaves the resolved config and
`metrics.json` in the run directory; a single run ends with its key metrics (`tour.run_summary`). It
returns `optimized_metric` so sweepers (Optuna) can use it.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from causal_engine.config import COMMON_RULES, Rule, validate
from causal_engine.discovery.rules import RULES as DISCOVERY_RULES
from causal_engine.dml.rules import RULES as DML_RULES
from causal_engine.errors import UserError
from causal_engine.intervene.rules import RULES as INTERVENE_RULES
from causal_engine.jepa.rules import RULES as JEPA_RULES
from causal_engine.tour import run_summary
from causal_engine.train import CONFIG_DIR

log = logging.getLogger(__name__)

# Every system's config rules; a rule whose key is absent from the composed config does not apply.
RULES: list[Rule] = [*COMMON_RULES, *DISCOVERY_RULES, *INTERVENE_RULES, *DML_RULES, *JEPA_RULES]


def _jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts as JSON; tensors and numpy scalars as floats; NaN as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, int):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


@rank_zero_only
def write_outputs(cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Leave `metrics.json` and the resolved config in the run directory (rank zero only)."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2, sort_keys=True) + "\n")
    (out / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Validate `cfg`, seed, run the task and write its outputs; return the task's metrics."""
    validate(cfg, RULES)
    L.seed_everything(cfg.seed, workers=True)
    task = instantiate(cfg.task)
    metrics = task(cfg)
    write_outputs(cfg, metrics)
    return metrics


def _optimized(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise UserError(f"optimized_metric={name!r} is not among the run's metrics: {sorted(metrics)}.")
    return float(metrics[name])


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Console script `causal-engine`."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = run(cfg)
        if not multirun:
            rank_zero_only(run_summary)(metrics, Path(cfg.paths.output_dir))
    except Exception as error:
        if multirun:
            # Into this job's log, where scripts/report.py finds it; Hydra then marks the job failed and
            # runs the remaining jobs of the sweep.
            log.error("job failed: %s: %s", type(error).__name__, error)
            raise
        if isinstance(error, UserError):
            print(f"causal-engine: error: {error}", file=sys.stderr)
            sys.exit(2)
        raise
    return _optimized(cfg, metrics)


if __name__ == "__main__":
    main()
