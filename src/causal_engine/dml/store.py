"""The fold store: each finished fold's out-of-fold predictions and record, saved atomically under the run
directory, so that a killed run resumed into the same directory (`hydra.run.dir=...`) refits only the folds
it had not finished. A saved fold carries the fingerprint of what it depends on; a fold of another run is
refused rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from causal_engine.dml.data import DMLInputError
from causal_engine.dml.fold import FoldRecord
from causal_engine.dml.folds import Fold

# Settings of the score, the inference and the analyses after the cross-fit only: changing them reuses the
# fitted folds.
INFERENCE_KEYS = ("score", "trim", "max_clipped_share", "normalize", "level", "sensitivity", "gate", "blp")


def fold_fingerprint(cfg: DictConfig) -> str:
    """What a saved fold depends on: data, representation model, the fitting part of `dml`, and seed."""
    fitting = {k: v for k, v in OmegaConf.to_container(cfg.dml, resolve=True).items() if k not in INFERENCE_KEYS}
    # ate and att share their nuisances (g0, g1, m); plr fits others (ell, m), so the score's family counts.
    fitting["nuisance_family"] = "plr" if cfg.dml.score == "plr" else "irm"
    parts = {"data": cfg.get("data"), "model": cfg.get("model"), "dml": fitting, "seed": cfg.get("seed")}
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(parts), resolve=True).encode()).hexdigest()


def fold_path(output_dir: str | Path, fold: Fold) -> Path:
    """Where a fold's predictions live in a run directory: `rep{r}/fold{k}/oof.npz`."""
    return Path(output_dir) / f"rep{fold.rep}" / f"fold{fold.k}" / "oof.npz"


def save_fold(path: Path, preds: dict[str, np.ndarray], record: FoldRecord, fingerprint: str) -> None:
    """A finished fold's out-of-fold predictions and record, written as soon as the fold completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "fingerprint": fingerprint,
        "outcome_mse": record.outcome_mse,
        "propensity_bce": record.propensity_bce,
        "treatment_mse": record.treatment_mse,
        "probe_r2": record.probe_r2,
        "jepa_metrics": record.jepa_metrics,
        "convergence": record.convergence,
    }
    trained = {f"trained_{name}": rows for name, rows in record.trained_rows.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, test=record.fold.test, meta=np.array(json.dumps(meta)), **preds, **trained)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written fold behind


def load_fold(path: Path, fold: Fold, fingerprint: str) -> tuple[dict[str, np.ndarray], FoldRecord] | None:
    """The saved fold at `path` when it belongs to this run's config and fold plan, else None."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta["fingerprint"] != fingerprint or not np.array_equal(saved["test"], fold.test):
            raise DMLInputError(
                f"{path} holds a fold of a different run (other data, model, dml settings or seed). Resume into "
                f"the run directory of the same command, or start a new one (omit hydra.run.dir)."
            )
        preds = {key: saved[key] for key in _prediction_keys(saved.files)}
        trained = {key.removeprefix("trained_"): saved[key] for key in saved.files if key.startswith("trained_")}
    record = FoldRecord(
        fold,
        trained,
        meta["outcome_mse"],
        meta["propensity_bce"],
        meta["probe_r2"],
        meta["jepa_metrics"],
        meta["treatment_mse"],
        meta["convergence"],
    )
    return preds, record


def _prediction_keys(files: list[str]) -> list[str]:
    """The out-of-fold prediction arrays of a saved fold (g0, g1, m for ate/att; ell, m for plr)."""
    return [key for key in files if key not in ("test", "meta") and not key.startswith("trained_")]


def load_out_of_fold(run_dir: Path, n: int, rep: int = 0) -> dict[str, np.ndarray]:
    """A finished run's pooled out-of-fold predictions (each [n]) of repetition `rep`, read from its store."""
    oof: dict[str, np.ndarray] = {}
    for path in sorted((Path(run_dir) / f"rep{rep}").glob("fold*/oof.npz")):
        with np.load(path) as saved:
            for key in _prediction_keys(saved.files):
                oof.setdefault(key, np.full(n, np.nan))[saved["test"]] = saved[key]
    return oof
