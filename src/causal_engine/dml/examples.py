"""Shipped example data for DML: NHEFS from the `causaldata` package (Hernán & Robins, ch. 12-13)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from causal_engine.dml.data import CausalSample, DMLInputError
from causal_engine.errors import require_extra


def nhefs_frame() -> pd.DataFrame:
    """NHEFS with the book's derived covariates (squares, category dummies); censored rows (no wt82) dropped."""
    require_extra("data=nhefs", "causaldata")
    from causaldata import nhefs

    frame = nhefs.load_pandas().data
    frame = frame[frame["wt82_71"].notna()].reset_index(drop=True)
    for col in ("age", "smokeintensity", "smokeyrs", "wt71"):
        frame[f"{col}_sq"] = frame[col] ** 2
    for col, levels in (("education", (2, 3, 4, 5)), ("exercise", (1, 2)), ("active", (1, 2))):
        for level in levels:
            frame[f"{col}_{level}"] = (frame[col] == level).astype(float)
    return frame


class NHEFS:
    """`data=nhefs`: the quit-smoking (qsmk) effect on weight gain (wt82_71, kg) given `covariates`."""

    def __init__(self, covariates: Sequence[str], treatment: str = "qsmk", outcome: str = "wt82_71") -> None:
        self.covariates, self.treatment, self.outcome = list(covariates), treatment, outcome

    def sample(self) -> CausalSample:
        frame = nhefs_frame()
        unknown = [c for c in [*self.covariates, self.treatment, self.outcome] if c not in frame.columns]
        if unknown:
            raise DMLInputError(f"data.covariates: NHEFS has no column(s) {unknown}; available: {list(frame.columns)}")
        x = frame[self.covariates].to_numpy(dtype=np.float32)
        return CausalSample(
            torch.from_numpy(x),
            frame[self.treatment].to_numpy(dtype=np.float64),
            frame[self.outcome].to_numpy(dtype=np.float64),
            feature_names=tuple(self.covariates),
        )
