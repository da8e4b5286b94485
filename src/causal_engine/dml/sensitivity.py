"""Sensitivity of a DML estimate to omitted confounding (Chernozhukov, Cinelli, Newey, Sharma & Syrgkanis 2022).

"Long story short" writes the target as θ = E[m(W; g)] for a Riesz representer α (E[m(W; f)] = E[f·α] for every
f), so the bias from leaving a confounder A out of the regression g and the representer α is bounded by
|θ_short - θ_long|² ≤ ρ² · C_Y² · C_D² · S²,  S² = σ² · ν²,  σ² = E[(Y - g)²],  ν² = E[α²],
where C_Y² = cf_y is the share of the outcome's residual variance that A explains, C_D² = cf_d / (1 - cf_d)
is the relative gain in the representer's variance from A (cf_d being that gain as a share), and ρ ∈ [-1, 1]
is how aligned the two gaps are. Every quantity is a mean over rows, so each has an influence function and
the bounds get confidence limits; ν² is estimated by the orthogonal moment E[2·m(W; α) - α²] (their Sec. 4).

Per score (α and m(W; α) at the clipped, optionally Hájek-normalised propensity; ℓ = E[Y|X]):
  ate: α = d/m - (1-d)/(1-m),             m(W; α) = 1/m + 1/(1-m),                 σ² from Y - g(D, X)
  att: α = (m/p)(d/m - (1-d)/(1-m)),      m(W; α) = (d/p)(m/p)(1/m + 1/(1-m)),     σ² from Y - g(D, X)
  plr: α = (d - m)/E[(d - m)²],           ν² = 1/E[(d - m)²],                      σ² from Y - ℓ - θ(d - m)
The definitions and the aggregation over repetitions (medians of per-repetition bounds) are DoubleML's
(`sensitivity_analysis`, `sensitivity_benchmark`), so the two agree to float precision on the same predictions.

The confidence limits on the bounds are one-sided at `level` for each end of the identified set (DoubleML's
choice: the interval [ci_low, ci_high] covers the whole set [θ_lower, θ_upper] with probability ≥ 2·level - 1
and each single point of it with probability ≥ level), so at cf_y = cf_d = 0 they equal the estimate's
two-sided interval at level 2·level - 1, not at `level`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.optimize import brentq

from causal_engine.dml.scores import (
    CLIPPED_TAILS,
    Predictions,
    clip_propensity,
    hajek_propensity,
    score_elements,
    solve,
)
from causal_engine.errors import UserError

# Robustness values are searched on [0, RV_MAX]: at cf_d = 1 the strength cf_d / (1 - cf_d) is infinite.
RV_MAX = 0.9999


@dataclass(frozen=True)
class SensitivityElements:
    """One repetition's estimate with σ², ν² and the per-row influence functions the bounds need."""

    theta: float
    sigma2: float
    nu2: float
    psi: np.ndarray  # [n] the score ψ(W; θ̂) scaled by 1 / E[ψ_a]: θ̂'s influence function
    psi_sigma2: np.ndarray  # [n] influence function of σ̂²
    psi_nu2: np.ndarray  # [n] influence function of ν̂²
    riesz: np.ndarray  # [n] the Riesz representer α̂
    nu2_fallback: bool  # the orthogonal ν̂² was not positive and E[α̂²] replaced it

    @property
    def max_bias(self) -> float:
        """S = σ·ν, the bias per unit of confounding strength ρ·C_Y·C_D."""
        return float(np.sqrt(self.sigma2 * self.nu2))

    @property
    def psi_max_bias(self) -> np.ndarray:
        """Influence function of S (delta method on √(σ²ν²))."""  # [n]
        return (self.sigma2 * self.psi_nu2 + self.nu2 * self.psi_sigma2) / (2.0 * self.max_bias)


def sensitivity_elements(
    score: str, y: np.ndarray, d: np.ndarray, predictions: Predictions, *, trim: float = 0.01, normalize: bool = False
) -> SensitivityElements:
    """σ², ν², their influence functions and θ̂'s, from one repetition's out-of-fold predictions.

    Takes the same arguments as `scores.score_elements`; ate and att need g1 here (σ² is the residual of the
    full outcome regression g(D, X) = D·g1 + (1 - D)·g0, also for att).
    """
    elements = score_elements(score, y, d, predictions, trim=trim, normalize=normalize)
    theta, _ = solve(elements)
    psi = (elements.psi_a * theta + elements.psi_b) / np.mean(elements.psi_a)  # [n]
    g0, g1, ell = (predictions.get(key) for key in ("g0", "g1", "ell"))
    y, d, m = (np.asarray(a, dtype=np.float64) for a in (y, d, predictions["m"]))
    if score == "plr":
        v = d - m  # [n]
        residual = y - np.asarray(ell, dtype=np.float64) - theta * v
        nu2 = 1.0 / np.mean(v**2)
        psi_nu2 = nu2 - v**2 * nu2**2  # delta method on 1 / E[v²]
        riesz = v * nu2
    else:
        if g1 is None:
            raise UserError(f"the {score} sensitivity analysis needs g1 = E[Y|X, D=1] (σ² is the residual of g(D, X))")
        m, _ = clip_propensity(m, trim, CLIPPED_TAILS[score])  # the score's own clipping rule
        if normalize:
            m = hajek_propensity(m, d)
        residual = y - d * np.asarray(g1, dtype=np.float64) - (1.0 - d) * np.asarray(g0, dtype=np.float64)
        if score == "ate":
            riesz = d / m - (1.0 - d) / (1.0 - m)
            m_alpha = 1.0 / m + 1.0 / (1.0 - m)
        else:
            # The ATT's forms with m/m cancelled: its lower tail is not clipped, so m may be 0.
            p = np.mean(d)
            riesz = d / p - (m / p) * (1.0 - d) / (1.0 - m)  # (m/p)(d/m - (1-d)/(1-m))
            m_alpha = d / (p**2 * (1.0 - m))  # (d/p)(m/p)(1/m + 1/(1-m))
        nu2_rows = 2.0 * m_alpha - riesz**2  # [n] the orthogonal moment of ν²
        nu2 = float(np.mean(nu2_rows))
        psi_nu2 = nu2_rows - nu2
    fallback = nu2 <= 0.0
    if fallback:
        # The orthogonal moment can go negative in small samples with extreme weights; E[α̂²] is positive
        # (not orthogonal, so its interval is optimistic) and is what DoubleML falls back to as well; its
        # influence function is centred here like every other (DoubleML leaves it uncentred, widening its CI).
        nu2 = float(np.mean(riesz**2))
        psi_nu2 = riesz**2 - nu2
    sigma2 = float(np.mean(residual**2))
    return SensitivityElements(
        theta=theta,
        sigma2=sigma2,
        nu2=float(nu2),
        psi=psi,
        psi_sigma2=residual**2 - sigma2,
        psi_nu2=psi_nu2,
        riesz=riesz,
        nu2_fallback=bool(fallback),
    )


def _check_strengths(cf_y: float, cf_d: float, rho: float, level: float) -> None:
    for name, value in (("cf_y", cf_y), ("cf_d", cf_d)):
        if not 0.0 <= value < 1.0:
            raise UserError(f"dml.sensitivity.{name}={value} must be in [0, 1): it is a share of explained variance")
    if not -1.0 <= rho <= 1.0:
        raise UserError(f"dml.sensitivity.rho={rho} must be in [-1, 1]: it is a correlation")
    if not 0.0 < level < 1.0:
        raise UserError(f"dml.level={level} must be in (0, 1)")


def strength(cf_y: float, cf_d: float, rho: float) -> float:
    """|ρ|·C_Y·C_D = |ρ|·√(cf_y · cf_d / (1 - cf_d)): the multiplier of S in the bias bound."""
    return abs(rho) * float(np.sqrt(cf_y * cf_d / (1.0 - cf_d)))


def bounds(
    reps: Sequence[SensitivityElements], cf_y: float, cf_d: float, rho: float = 1.0, level: float = 0.95
) -> tuple[float, float, float, float]:
    """(θ_lower, θ_upper, ci_low, ci_high) at the given strengths: medians of the per-repetition values."""
    _check_strengths(cf_y, cf_d, rho, level)
    if not reps:
        raise ValueError("sensitivity bounds need at least one repetition")
    c = strength(cf_y, cf_d, rho)
    z = NormalDist().inv_cdf(level)  # one-sided per end, see the module docstring
    rows = []
    for r in reps:
        n = r.psi.shape[0]
        psi_bias = c * r.psi_max_bias  # [n]
        se_low = np.sqrt(np.mean((r.psi - psi_bias) ** 2) / n)
        se_high = np.sqrt(np.mean((r.psi + psi_bias) ** 2) / n)
        low, high = r.theta - c * r.max_bias, r.theta + c * r.max_bias
        rows.append((low, high, low - z * se_low, high + z * se_high))
    low, high, ci_low, ci_high = np.median(np.array(rows), axis=0)
    return float(low), float(high), float(ci_low), float(ci_high)


def _side(reps: Sequence[SensitivityElements], null_hypothesis: float, confidence: bool) -> int:
    """Index into `bounds`' tuple of the end that moves towards the null (the upper one if the null is above)."""
    upper = null_hypothesis > float(np.median([r.theta for r in reps]))
    return (3 if confidence else 1) if upper else (2 if confidence else 0)


@dataclass(frozen=True)
class SensitivityResult:
    """Bounds at one scenario (cf_y, cf_d, rho) and the robustness values for one null hypothesis."""

    theta: float
    cf_y: float
    cf_d: float
    rho: float
    level: float
    null_hypothesis: float
    theta_lower: float
    theta_upper: float
    ci_low: float
    ci_high: float
    rv: float  # smallest cf_y = cf_d at which the bound on θ reaches the null
    rva: float  # the same for the confidence limit (accounts for sampling error)
    sigma2: float  # median over repetitions
    nu2: float

    def as_metrics(self, prefix: str = "dml/sensitivity") -> dict[str, float]:
        """Flat `prefix/name` floats for metrics.json and the loggers."""
        names = ("theta_lower", "theta_upper", "ci_low", "ci_high", "rv", "rva", "cf_y", "cf_d", "rho")
        return {f"{prefix}/{name}": float(getattr(self, name)) for name in names}


def robustness_value(
    reps: Sequence[SensitivityElements],
    *,
    null_hypothesis: float = 0.0,
    rho: float = 1.0,
    level: float = 0.95,
    confidence: bool = False,
) -> float:
    """The smallest cf_y = cf_d at which the bound (or its confidence limit) on the null's side reaches the null.

    0 when the null already lies inside the bounds (interval) without confounding; 1 when no strength below
    RV_MAX reaches it. Found by root-finding to 1e-12, where DoubleML minimises the squared gap (to ~1e-5).
    """
    pick = _side(reps, null_hypothesis, confidence)

    def gap(value: float) -> float:  # > 0 once the bound has crossed the null
        bound = bounds(reps, value, value, rho, level)[pick]
        return bound - null_hypothesis if pick % 2 else null_hypothesis - bound

    if gap(0.0) >= 0.0:
        return 0.0
    if gap(RV_MAX) < 0.0:
        return 1.0
    return float(brentq(gap, 0.0, RV_MAX, xtol=1e-12, rtol=1e-12))


def sensitivity_analysis(
    reps: Sequence[SensitivityElements],
    *,
    cf_y: float = 0.03,
    cf_d: float = 0.03,
    rho: float = 1.0,
    level: float = 0.95,
    null_hypothesis: float = 0.0,
) -> SensitivityResult:
    """Bounds on θ and its confidence limits at (cf_y, cf_d, rho), with RV and RVa for `null_hypothesis`."""
    theta_lower, theta_upper, ci_low, ci_high = bounds(reps, cf_y, cf_d, rho, level)
    rv, rva = (
        robustness_value(reps, null_hypothesis=null_hypothesis, rho=rho, level=level, confidence=confidence)
        for confidence in (False, True)
    )
    return SensitivityResult(
        theta=float(np.median([r.theta for r in reps])),
        cf_y=cf_y,
        cf_d=cf_d,
        rho=rho,
        level=level,
        null_hypothesis=null_hypothesis,
        theta_lower=theta_lower,
        theta_upper=theta_upper,
        ci_low=ci_low,
        ci_high=ci_high,
        rv=rv,
        rva=rva,
        sigma2=float(np.median([r.sigma2 for r in reps])),
        nu2=float(np.median([r.nu2 for r in reps])),
    )


@dataclass(frozen=True)
class Benchmark:
    """The strengths an observed covariate group has, read as if it were the omitted confounder."""

    cf_y: float
    cf_d: float
    rho: float
    delta_theta: float  # θ_short - θ_long

    def as_metrics(self, prefix: str = "dml/sensitivity/benchmark") -> dict[str, float]:
        """Flat `prefix/name` floats for metrics.json and the loggers."""
        return {f"{prefix}/{name}": float(getattr(self, name)) for name in ("cf_y", "cf_d", "rho", "delta_theta")}


def benchmark(long: Sequence[SensitivityElements], short: Sequence[SensitivityElements]) -> Benchmark:
    """Gain statistics of a covariate group: `long` used it, `short` was refitted without it on the same folds.

    cf_y = (σ²_short - σ²_long) / σ²_long is the outcome's residual variance the group explains, relative to
    what remains (the paper's (R²_long - R²_short) / (1 - R²_long); Var(Y) cancels);
    cf_d = (ν²_long - ν²_short) / ν²_short the relative gain in the representer's variance; both clipped to
    [0, 1]. ρ = sign(Δθ)·min(1, |Δθ| / √((σ²_short - σ²_long)(ν²_long - ν²_short))), and ±1 when either gain
    is not positive. Each is the median over repetitions, as DoubleML's `sensitivity_benchmark`.
    """
    if len(long) != len(short) or not long:
        raise ValueError(f"benchmark needs the same, positive number of repetitions (got {len(long)}, {len(short)})")
    rows = []
    for lo, sh in zip(long, short, strict=True):
        gain_y, gain_d = sh.sigma2 - lo.sigma2, lo.nu2 - sh.nu2
        delta = sh.theta - lo.theta
        denom = np.sqrt(gain_y * gain_d) if gain_y > 0.0 and gain_d > 0.0 else 0.0
        rho = min(abs(delta) / denom, 1.0) if denom != 0.0 else 1.0
        rows.append(
            (np.clip(gain_y / lo.sigma2, 0.0, 1.0), np.clip(gain_d / sh.nu2, 0.0, 1.0), np.sign(delta) * rho, delta)
        )
    cf_y, cf_d, rho, delta = np.median(np.array(rows), axis=0)
    return Benchmark(cf_y=float(cf_y), cf_d=float(cf_d), rho=float(rho), delta_theta=float(delta))


def benchmark_bounds(
    reps: Sequence[SensitivityElements], bench: Benchmark, rho: float = 1.0, level: float = 0.95
) -> tuple[float, float, float, float]:
    """(θ_lower, θ_upper, ci_low, ci_high) if the omitted confounder were as strong as the benchmarked group: `bounds`
    at its cf_y and cf_d and the given ρ, the point the contour marks. ρ = 1 (`dml.sensitivity.rho`'s default),
    not the group's own ρ: that estimate understates the alignment of a confounder as strong, and its bounds
    under-cover (docs/jepa_dml.md, Results). A strength the benchmark clipped to 1 is taken as RV_MAX, the largest
    the bounds are finite at."""
    return bounds(reps, min(bench.cf_y, RV_MAX), min(bench.cf_d, RV_MAX), rho, level)


def contour_grid(
    reps: Sequence[SensitivityElements],
    cf_y: np.ndarray,
    cf_d: np.ndarray,
    *,
    rho: float = 1.0,
    level: float = 0.95,
    null_hypothesis: float = 0.0,
    confidence: bool = False,
) -> np.ndarray:
    """The bound on the null's side over a grid: out[i, j] at cf_y[i], cf_d[j] (θ bound, or its confidence limit)."""
    pick = _side(reps, null_hypothesis, confidence)
    return np.array([[bounds(reps, float(cy), float(cd), rho, level)[pick] for cd in cf_d] for cy in cf_y])  # [Y, D]
