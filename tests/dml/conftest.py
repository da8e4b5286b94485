"""Shared helpers for the DML tests: a tiny crossfit config, linear out-of-fold predictions, and DoubleML fitted
on those same predictions (the cross-check of our scores, sensitivity bounds and group effects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from doubleml import DoubleMLData, DoubleMLIRM, DoubleMLPLR
from sklearn.linear_model import LinearRegression, LogisticRegression

# The default covariate learners (the lasso-and-forest stack) at test size: forests of 20 trees, 3 inner folds.
SMALL_STACK = [
    f"dml.tabular.{role}.{key}"
    for role in ("outcome", "propensity")
    for key in ("estimators.1.1.n_estimators=20", "cv=3")
]


def table_overrides(path: Path, small_stack: bool = True) -> list[str]:
    """`task=crossfit` on a table at `path` with columns t, y, x1, x2 (K = 3, no callbacks, CSV logger), the default
    learners at test size unless `small_stack` is False (for a run that picks another preset)."""
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
        *(SMALL_STACK if small_stack else []),
    ]


def linear_out_of_fold(x: np.ndarray, d: np.ndarray, y: np.ndarray, folds: list) -> dict[str, np.ndarray]:
    """Out-of-fold g0, g1, m, ell [n] each from linear (logistic for m) learners on the given folds."""
    out = {key: np.zeros(len(y)) for key in ("g0", "g1", "m", "ell")}
    for train, test in folds:
        for arm, key in ((0, "g0"), (1, "g1")):
            rows = train[d[train] == arm]
            out[key][test] = LinearRegression().fit(x[rows], y[rows]).predict(x[test])
        out["m"][test] = LogisticRegression().fit(x[train], d[train]).predict_proba(x[test])[:, 1]
        out["ell"][test] = LinearRegression().fit(x[train], y[train]).predict(x[test])
    return out


def doubleml_with(
    score: str, frame: pd.DataFrame, folds: list, preds: dict[str, np.ndarray], normalize: bool = False
) -> tuple[Any, dict[str, np.ndarray]]:
    """DoubleML's PLR or IRM on `frame` (outcome y, treatment d, the other columns covariates), fitted with our
    predictions `preds` on our folds; returns the model and the external predictions it was given."""
    covariates = [c for c in frame.columns if c not in ("y", "d")]
    data = DoubleMLData(frame, y_col="y", d_cols="d", x_cols=covariates)
    if score == "plr":
        model = DoubleMLPLR(
            data, LinearRegression(), LinearRegression(), n_folds=len(folds), draw_sample_splitting=False
        )
        external = {"ml_l": preds["ell"][:, None], "ml_m": preds["m"][:, None]}
    else:
        model = DoubleMLIRM(
            data,
            LinearRegression(),
            LogisticRegression(),
            n_folds=len(folds),
            score={"ate": "ATE", "att": "ATTE"}[score],
            normalize_ipw=normalize,
            draw_sample_splitting=False,
        )
        external = {key: preds[key[3:]][:, None] for key in ("ml_g0", "ml_g1", "ml_m")}
    model.set_sample_splitting(folds)
    model.fit(external_predictions={"d": external})
    return model, external
