"""Heterogeneous effects from one cross-fit: group average effects (GATE) and the best linear projection (BLP).

Both are least-squares projections of the orthogonal score's pseudo-outcome on a basis (Semenova &
Chernozhukov 2021, "Debiased machine learning of conditional average treatment effects and other causal
functions"), with heteroscedasticity-robust (HC0) standard errors:
  ate: regress the AIPW pseudo-outcome ψ_b = g1 - g0 + d(y - g1)/m - (1-d)(y - g0)/(1-m) on the basis B(X);
       its conditional mean is the CATE, so the coefficients are the CATE's best linear predictor.
  plr: regress the outcome residual y - ℓ on B(X)·(d - m); with B = 1 this is the partialling-out estimate,
       and with B(X) it fits θ(X) = B(X)'β in the partially linear model.
With B the indicators of mutually exclusive groups the coefficients are the GATEs. A single group holding
every row gives back the ATE (PLR) estimate and its standard error exactly. This is what DoubleML's `gate`
and `cate` compute (they reject the att score too: its pseudo-outcome is not a CATE); with several
cross-fitting repetitions each coefficient is median-aggregated with the between-split spread, as
`scores.aggregate` does for the main estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from causal_engine.dml.scores import Predictions, score_elements
from causal_engine.errors import UserError


@dataclass(frozen=True)
class LinearEffects:
    """Coefficients of a linear projection of the effect, with robust SEs and CIs: GATEs or a BLP."""

    kind: str  # "gate" or "blp"
    names: tuple[str, ...]
    estimate: np.ndarray  # [k]
    se: np.ndarray  # [k]
    ci_low: np.ndarray  # [k]
    ci_high: np.ndarray  # [k]
    level: float
    n: int
    counts: tuple[int, ...] | None = None  # rows per group (GATE only)
    n_rep: int = 1

    def frame(self) -> pd.DataFrame:
        """One row per coefficient: name, estimate, se, ci_low, ci_high (and n for groups)."""
        out = pd.DataFrame(
            {
                "name": self.names,
                "estimate": self.estimate,
                "se": self.se,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
            }
        )
        if self.counts is not None:
            out["n"] = self.counts
        return out

    def write_csv(self, path: str | Path) -> Path:
        """Write `frame()` as CSV (parents created); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(out, index=False)
        return out

    def as_metrics(self, prefix: str = "dml") -> dict[str, float]:
        """Flat `prefix/kind/name[/se|ci_low|ci_high]` floats for metrics.json and the loggers."""
        out: dict[str, float] = {}
        for i, name in enumerate(self.names):
            key = f"{prefix}/{self.kind}/{name}"
            out[key] = float(self.estimate[i])
            for stat in ("se", "ci_low", "ci_high"):
                out[f"{key}/{stat}"] = float(getattr(self, stat)[i])
        return out


def pseudo_outcome(
    score: str, y: np.ndarray, d: np.ndarray, predictions: Predictions, *, trim: float = 0.01, normalize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(signal, weight): the effect is projected by regressing `signal` on basis·`weight` (module docstring)."""
    if score not in ("ate", "plr"):
        raise UserError(
            f"dml.score={score!r} has no conditional-effect pseudo-outcome: group effects and the BLP need "
            "dml.score=ate (or plr)"
        )
    elements = score_elements(score, y, d, predictions, trim=trim, normalize=normalize)
    if score == "ate":
        return elements.psi_b, np.ones_like(elements.psi_b)  # ψ_a = -1: ψ_b alone is the pseudo-outcome
    y, d, m, ell = (np.asarray(a, dtype=np.float64) for a in (y, d, predictions["m"], predictions["ell"]))
    return y - ell, d - m


def project(signal: np.ndarray, regressors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients of `signal` [n] on `regressors` [n, k] and their HC0 standard errors.

    HC0 (White's sandwich without a small-sample factor) is the influence-function variance of the
    coefficients, the same as the main estimate's; DoubleML uses it too.
    """
    bread = np.linalg.pinv(regressors.T @ regressors)  # [k, k]
    beta = bread @ (regressors.T @ signal)  # [k]
    scores = regressors * (signal - regressors @ beta)[:, None]  # [n, k]
    cov = bread @ (scores.T @ scores) @ bread  # [k, k]
    return beta, np.sqrt(np.diag(cov))


def _combine(
    kind: str,
    names: Sequence[str],
    fits: Sequence[tuple[np.ndarray, np.ndarray]],
    level: float,
    n: int,
    counts: tuple[int, ...] | None = None,
) -> LinearEffects:
    """Median-aggregate per-repetition (β, se) as `scores.aggregate` does, and attach normal CIs."""
    if not 0.0 < level < 1.0:
        raise UserError(f"dml.level={level} must be in (0, 1)")
    betas, ses = (np.stack(a) for a in zip(*fits, strict=True))  # [R, k] each
    beta = np.median(betas, axis=0)
    se = np.sqrt(np.median(ses**2 + (betas - beta) ** 2, axis=0))
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return LinearEffects(kind, tuple(names), beta, se, beta - z * se, beta + z * se, level, n, counts, len(fits))


def _repetitions(
    score: str, y: np.ndarray, d: np.ndarray, predictions: Sequence[Predictions], trim: float, normalize: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    if not predictions:
        raise ValueError("heterogeneous effects need at least one repetition's predictions")
    return [pseudo_outcome(score, y, d, p, trim=trim, normalize=normalize) for p in predictions]


def gate(
    score: str,
    y: np.ndarray,
    d: np.ndarray,
    groups: np.ndarray,
    predictions: Sequence[Predictions],
    *,
    trim: float = 0.01,
    normalize: bool = False,
    level: float = 0.95,
) -> LinearEffects:
    """Group average effects for the labels in `groups` [n] (one group per distinct value, sorted).

    `predictions` holds one dict of out-of-fold g0, g1, m, ell arrays per cross-fitting repetition.
    """
    groups = np.asarray(groups)
    if groups.shape != np.shape(y):
        raise UserError(
            f"the groups have shape {groups.shape} but the outcome has {np.shape(y)}: give one label per row"
        )
    labels, counts = np.unique(groups, return_counts=True)
    if np.any(counts < 2):
        small = [str(g) for g, c in zip(labels, counts, strict=True) if c < 2]
        raise UserError(f"groups {small} have a single row, so their effect has no standard error: merge them")
    dummies = (groups[:, None] == labels[None, :]).astype(np.float64)  # [n, G]
    fits = [project(s, dummies * w[:, None]) for s, w in _repetitions(score, y, d, predictions, trim, normalize)]
    return _combine("gate", [str(g) for g in labels], fits, level, len(groups), tuple(int(c) for c in counts))


def quantile_groups(values: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels q1 … q{q} [n] for `q` groups of a numeric column split at its sample quantiles (q = 3: terciles),
    and the q - 1 inner cut points; a value on a cut point goes to the upper group."""
    if q < 2:
        raise UserError(f"dml.gate.quantiles={q}: split into at least 2 groups (or null for the column's own values)")
    values = np.asarray(values, dtype=np.float64)
    cuts = np.quantile(values, np.arange(1, q) / q)  # [q - 1]
    width = len(str(q))  # zero-padded so the labels sort in order
    return np.array([f"q{i + 1:0{width}d}" for i in np.searchsorted(cuts, values, side="right")]), cuts


def blp(
    score: str,
    y: np.ndarray,
    d: np.ndarray,
    basis: np.ndarray,
    predictions: Sequence[Predictions],
    *,
    names: Sequence[str] | None = None,
    intercept: bool = True,
    trim: float = 0.01,
    normalize: bool = False,
    level: float = 0.95,
) -> LinearEffects:
    """Best linear projection of the CATE on `basis` [n, k] (an intercept column is prepended unless told not to)."""
    basis = np.asarray(basis, dtype=np.float64)
    basis = basis[:, None] if basis.ndim == 1 else basis
    if basis.shape[0] != np.shape(y)[0]:
        raise UserError(f"the BLP basis has {basis.shape[0]} rows but the outcome has {np.shape(y)[0]}")
    names = [f"x{j}" for j in range(basis.shape[1])] if names is None else list(names)
    if len(names) != basis.shape[1]:
        raise UserError(f"{len(names)} BLP names for {basis.shape[1]} basis columns")
    if intercept:
        basis, names = np.column_stack([np.ones(basis.shape[0]), basis]), ["intercept", *names]
    if np.linalg.matrix_rank(basis) < basis.shape[1]:
        raise UserError(f"the BLP basis {names} is collinear: drop a column (or intercept=False if one is constant)")
    fits = [project(s, basis * w[:, None]) for s, w in _repetitions(score, y, d, predictions, trim, normalize)]
    return _combine("blp", names, fits, level, basis.shape[0])
