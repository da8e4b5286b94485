"""Neyman-orthogonal scores for Double Machine Learning: AIPW (ATE, ATT) and PLR partialling-out.

Pure NumPy on out-of-fold nuisance predictions, so every number can be checked by hand. Each score is
linear in the target parameter, ψ(W; θ, η) = ψ_a(W; η)·θ + ψ_b(W; η), which gives
θ̂ = -mean(ψ_b) / mean(ψ_a) and the influence-function variance σ̂² = mean(ψ²) / (mean(ψ_a)² · n)
(Chernozhukov et al. 2018, "Double/debiased machine learning", Thm. 3.1 and Def. 3.2). Repeated
cross-fitting is aggregated by the median with the between-split spread (their Sec. 3.4):
θ̃ = median_r θ̂_r, σ̃² = median_r (σ̂_r² + (θ̂_r - θ̃)²).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

SCORES = ("ate", "att", "plr")

# One cross-fitting repetition's out-of-fold nuisance predictions, [n] each, keyed as the fold loop stores them:
# g0, g1 = E[Y|X, D=0/1] (ate, att), m = E[D|X] (every score), ell = E[Y|X] (plr). A score reads the ones it needs.
Predictions = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class DMLResult:
    """One DML estimate with its honest statistical output (estimate, SE, CI and the overlap diagnostics)."""

    score: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    level: float
    clipped_share: float  # share of propensities the score clips (its tails only; worst repetition)
    propensity_min: float  # of the raw (unclipped) predictions, over all repetitions
    propensity_max: float
    n_rep: int = 1
    # Shares of raw propensities below trim / above 1 - trim (worst repetition); None for a continuous treatment.
    share_below: float | None = None
    share_above: float | None = None
    rep_estimates: tuple[float, ...] = field(default=())
    rep_ses: tuple[float, ...] = field(default=())

    def as_metrics(self, prefix: str = "dml") -> dict[str, float]:
        """Flat `prefix/name` floats for metrics.json and the loggers."""
        out = {
            f"{prefix}/{self.score}": self.estimate,
            f"{prefix}/se": self.se,
            f"{prefix}/ci_low": self.ci_low,
            f"{prefix}/ci_high": self.ci_high,
            f"{prefix}/n": float(self.n),
            f"{prefix}/level": self.level,
            f"{prefix}/clipped_share": self.clipped_share,
            f"{prefix}/propensity_min": self.propensity_min,
            f"{prefix}/propensity_max": self.propensity_max,
            f"{prefix}/n_rep": float(self.n_rep),
        }
        if self.share_below is not None:
            out[f"{prefix}/share_below_trim"] = self.share_below
            out[f"{prefix}/share_above_trim"] = self.share_above
        if self.n_rep > 1:
            out[f"{prefix}/rep_spread"] = float(np.std(self.rep_estimates))
        return out


@dataclass(frozen=True)
class ScoreElements:
    """ψ = ψ_a·θ + ψ_b per row, plus the propensity diagnostics of the clipping step."""

    psi_a: np.ndarray  # [n]
    psi_b: np.ndarray  # [n]
    clipped_share: float
    propensity_min: float
    propensity_max: float
    share_below: float | None = None
    share_above: float | None = None


# Which tails of the propensity each score clips and counts against dml.max_clipped_share: (lower, upper).
# ATE weighs treated rows by 1/e and controls by 1/(1-e), so both tails explode. ATT weighs only controls,
# by e/(1-e): a control with e near 0 gets a weight near 0 (lifting it to `trim` would inflate it), and only
# controls with e near 1 threaten the estimate. PLR's E[D|X] is a regression, not a weight: never clipped.
CLIPPED_TAILS = {"ate": (True, True), "att": (False, True), "plr": (False, False)}


def clip_propensity(m: np.ndarray, trim: float, tails: tuple[bool, bool] = (True, True)) -> tuple[np.ndarray, float]:
    """Truncate propensities in the given `tails` (lower, upper) to [trim, 1 - trim]; return them and the share
    of rows that moved.

    Truncation (not dropping) keeps every row in the estimate, which is what DoubleML's
    `trimming_rule="truncate"` does; the clipped share tells the user how much it mattered.
    """
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"dml.trim={trim} must be in [0, 0.5)")
    lower, upper = tails
    clipped = np.clip(m, trim if lower else None, 1.0 - trim if upper else None)
    return clipped, float(np.mean(clipped != m))


def clipped_share(score: str, m: np.ndarray, trim: float) -> float:
    """Share of propensities `m` that `score` would clip (and count against dml.max_clipped_share)."""
    return clip_propensity(np.asarray(m, dtype=np.float64), trim, CLIPPED_TAILS[score])[1]


def tail_shares(m: np.ndarray, trim: float) -> tuple[float, float]:
    """Shares of propensities below `trim` and above 1 - `trim` (reported for every score)."""
    m = np.asarray(m, dtype=np.float64)
    return float(np.mean(m < trim)), float(np.mean(m > 1.0 - trim))


def hajek_propensity(m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Propensities rescaled so the inverse-probability weights of each arm average to one (Hájek).

    Equivalent to normalising d/m and (1-d)/(1-m) by their sample means, written as an adjusted
    propensity so that the same AIPW formula applies (this is DoubleML's `normalize_ipw=True`).
    """
    mean_w1 = np.mean(d / m)
    mean_w0 = np.mean((1.0 - d) / (1.0 - m))
    return d * m * mean_w1 + (1.0 - d) * (1.0 - (1.0 - m) * mean_w0)


def score_elements(
    score: str, y: np.ndarray, d: np.ndarray, predictions: Predictions, *, trim: float = 0.01, normalize: bool = False
) -> ScoreElements:
    """ψ_a and ψ_b of one cross-fitting repetition from out-of-fold predictions.

    ate: ψ_b = g1 - g0 + d(y - g1)/m - (1-d)(y - g0)/(1-m),  ψ_a = -1.
    att: ψ_b = d(y - g0)/p - m(1-d)(y - g0)/(p(1-m)),       ψ_a = -d/p,  p = mean(d).
    plr: ψ_b = (d - m)(y - ℓ),                               ψ_a = -(d - m)²  (ℓ = E[Y|X]).
    g0, g1 are E[Y|X, D=0/1], m is E[D|X] (P(D=1|X) for a binary treatment); PLR ignores g0/g1 and uses ℓ.
    Clipping follows `CLIPPED_TAILS`; the tail shares are reported for a binary treatment whatever the score.
    """
    if score not in SCORES:
        raise ValueError(f"dml.score={score!r} is not one of {SCORES}")
    g0, g1, ell = (predictions.get(key) for key in ("g0", "g1", "ell"))
    y, d, m = (np.asarray(a, dtype=np.float64) for a in (y, d, predictions["m"]))
    m_raw = m
    binary = bool(np.isin(d, (0.0, 1.0)).all())
    tails = tail_shares(m_raw, trim) if binary else (None, None)
    if score == "plr":
        if ell is None:
            raise ValueError("the plr score needs ell = E[Y|X]")
        v = d - m  # [n]
        return ScoreElements(-(v**2), v * (y - np.asarray(ell, dtype=np.float64)), 0.0, *_range(m_raw), *tails)
    if g0 is None:
        raise ValueError(f"the {score} score needs g0 = E[Y|X, D=0]")
    m, share = clip_propensity(m, trim, CLIPPED_TAILS[score])
    if normalize:
        m = hajek_propensity(m, d)
    g0 = np.asarray(g0, dtype=np.float64)
    if score == "ate":
        if g1 is None:
            raise ValueError("the ate score needs g1 = E[Y|X, D=1]")
        g1 = np.asarray(g1, dtype=np.float64)
        psi_b = g1 - g0 + d * (y - g1) / m - (1.0 - d) * (y - g0) / (1.0 - m)
        psi_a = -np.ones_like(y)
    else:
        p = np.mean(d)
        psi_b = d * (y - g0) / p - m * (1.0 - d) * (y - g0) / (p * (1.0 - m))
        psi_a = -d / p
    return ScoreElements(psi_a, psi_b, share, *_range(m_raw), *tails)


def _range(m: np.ndarray) -> tuple[float, float]:
    return float(np.min(m)), float(np.max(m))


def _worst(shares: Iterable[float | None]) -> float | None:
    shares = [s for s in shares if s is not None]
    return max(shares) if shares else None


def solve(elements: ScoreElements) -> tuple[float, float]:
    """θ̂ and its influence-function standard error for one repetition."""
    n = elements.psi_a.shape[0]
    j = np.mean(elements.psi_a)
    theta = -np.mean(elements.psi_b) / j
    psi = elements.psi_a * theta + elements.psi_b  # [n]
    se = np.sqrt(np.mean(psi**2) / (j**2 * n))
    return float(theta), float(se)


def aggregate(score: str, reps: Sequence[ScoreElements], *, level: float = 0.95) -> DMLResult:
    """Median-aggregate R repetitions (Chernozhukov et al. 2018, Sec. 3.4) into one DMLResult.

    With one repetition this is the plain estimate; with several the SE includes the between-split
    spread, so a fit that depends on the split reports it.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"dml.level={level} must be in (0, 1)")
    if not reps:
        raise ValueError("aggregate needs at least one repetition")
    thetas, ses = map(np.array, zip(*(solve(r) for r in reps), strict=True))
    theta = float(np.median(thetas))
    se = float(np.sqrt(np.median(ses**2 + (thetas - theta) ** 2)))
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return DMLResult(
        score=score,
        estimate=theta,
        se=se,
        ci_low=theta - z * se,
        ci_high=theta + z * se,
        n=int(reps[0].psi_a.shape[0]),
        level=level,
        clipped_share=max(r.clipped_share for r in reps),
        propensity_min=min(r.propensity_min for r in reps),
        propensity_max=max(r.propensity_max for r in reps),
        n_rep=len(reps),
        share_below=_worst(r.share_below for r in reps),
        share_above=_worst(r.share_above for r in reps),
        rep_estimates=tuple(float(t) for t in thetas),
        rep_ses=tuple(float(s) for s in ses),
    )


def estimate(
    score: str,
    y: np.ndarray,
    d: np.ndarray,
    *,
    g0: np.ndarray | None = None,
    g1: np.ndarray | None = None,
    m: np.ndarray,
    ell: np.ndarray | None = None,
    trim: float = 0.01,
    normalize: bool = False,
    level: float = 0.95,
) -> DMLResult:
    """One repetition from arrays of out-of-fold predictions: the common one-call entry point."""
    predictions = {"g0": g0, "g1": g1, "m": m, "ell": ell}
    return aggregate(score, [score_elements(score, y, d, predictions, trim=trim, normalize=normalize)], level=level)
