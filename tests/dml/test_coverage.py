"""The coverage studies of the DML analyses (`causal_engine.dml.coverage`): each replicate is a real cross-fit on a
tiny draw, and the summaries count coverage exactly, with the exact binomial interval."""

import numpy as np
import pytest

from causal_engine.dml.coverage import rate, replicate, summarise

BOUNDS = ("theta_lower", "theta_upper", "ci_low", "ci_high")
# Tiny and fast: 300 rows, two folds, forests of 10 trees.
TINY = [
    "data.n_samples=300",
    "dml.k_folds=2",
    "dml.tabular.outcome.n_estimators=10",
    "dml.tabular.propensity.n_estimators=10",
]


def test_rate_is_the_exact_binomial_interval():
    assert rate(np.ones(60, dtype=bool)) == pytest.approx((1.0, 0.025 ** (1 / 60), 1.0))
    assert rate(np.array([False])) == pytest.approx((0.0, 0.0, 0.975))
    share, low, high = rate(np.r_[np.ones(57), np.zeros(3)])
    assert share == 0.95 and low < 0.95 < high


def test_sensitivity_replicate_benchmarks_the_brightness_and_bounds_the_hidden_confounder(tmp_path):
    record = replicate("sensitivity", 3, 1.0, TINY, tmp_path)
    m = record["metrics"]
    assert m["dml/true_ate"] == 1.0 and "dml/fold0/outcome_mse" not in m
    prefix = "dml/sensitivity/benchmark/"
    assert m[f"{prefix}ci_low"] <= m[f"{prefix}theta_lower"] <= m["dml/ate"] <= m[f"{prefix}theta_upper"]
    assert m[f"{prefix}cf_y"] > 0.0  # the brightness moves the outcome
    # The run reports the bounds at rho = 1; recomputed from its saved folds they agree, and the benchmark's own
    # rho (at most 1) can only narrow them.
    np.testing.assert_allclose(record["bounds"]["rho_one"], [m[prefix + k] for k in BOUNDS], rtol=1e-12)
    low, high, ci_low, ci_high = record["bounds"]["benchmark_rho"]
    assert m[f"{prefix}theta_lower"] <= low and high <= m[f"{prefix}theta_upper"]
    assert m[f"{prefix}ci_low"] <= ci_low and ci_high <= m[f"{prefix}ci_high"]
    # Two strengths, the second replicate made to miss everywhere: the counts are exact.
    far = record | {"strength": 2.0, "metrics": m | {"dml/true_ate": m[f"{prefix}ci_high"] + 1.0}}
    table = summarise([record, far])
    covered = m["dml/ci_low"] <= 1.0 <= m["dml/ci_high"]
    held = m[f"{prefix}ci_low"] <= 1.0 <= m[f"{prefix}ci_high"]  # the CI of the bounds at rho = 1
    row1 = next(line for line in table.splitlines() if line.startswith("| 1 |"))
    row2 = next(line for line in table.splitlines() if line.startswith("| 2 |"))
    assert f"({int(covered)}/1)" in row1.split("|")[4] and f"({int(held)}/1)" in row1.split("|")[9]
    assert all("(0/1)" in row2.split("|")[i] for i in (4, 8, 9, 11))


def test_gate_replicate_reports_the_size_terciles_against_their_true_effects(tmp_path):
    record = replicate("gate", 4, None, TINY, tmp_path)
    truth = record["true_gate"]
    assert sorted(truth) == ["q1", "q2", "q3"]
    # tau = 1 + 0.5 * u_size rises with the size: the terciles' true effects are ordered around 1.
    assert truth["q1"] < 1.0 < truth["q3"] and truth["q1"] < truth["q2"] < truth["q3"]
    assert np.mean(list(truth.values())) == pytest.approx(1.0, abs=0.1)
    m = record["metrics"]
    hits = [m[f"dml/gate/{g}/ci_low"] <= truth[g] <= m[f"dml/gate/{g}/ci_high"] for g in ("q1", "q2", "q3")]
    assert f"coverage {sum(hits) / 3:.3f}" in summarise([record]).splitlines()[0]
