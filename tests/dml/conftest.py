"""Shared helpers for the DML tests."""

from __future__ import annotations

from pathlib import Path


def table_overrides(path: Path) -> list[str]:
    """`task=crossfit` on a table at `path` with columns t, y, x1, x2 (K = 3, no callbacks, CSV logger)."""
    return [
        "task=crossfit",
        "data=table",
        f"data.path={path}",
        "data.treatment=t",
        "data.outcome=y",
        "data.covariates=[x1,x2]",
        "callbacks=none",
        "logger=csv",
        "dml.k_folds=3",
    ]
