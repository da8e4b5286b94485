"""The simulated JEPA-DML benchmark (scripts/bench_dml.py): the replicate table, its Monte Carlo errors and the
target verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from causal_engine.dml import benchmark as bench_dml


def _records(estimates: dict[str, list[float]], se: dict[str, float]) -> list[dict]:
    """Replicates whose every estimator reports `estimates[name][i]` with a Wald CI of half-width 1.96·se."""
    n = len(next(iter(estimates.values())))
    out = []
    for i in range(n):
        rows = {}
        for name in bench_dml.ESTIMATORS:
            est = estimates[name][i]
            rows[name] = {"estimate": est, "se": se[name], "ci_low": est - 1.96 * se[name],
                          "ci_high": est + 1.96 * se[name], "seconds": 60.0, "probe_r2": 0.9}  # fmt: skip
        out.append({"seed": i, "overrides": [], "estimators": rows})
    return out


def test_summary_counts_coverage_bias_and_their_monte_carlo_errors() -> None:
    jepa = [1.0, 1.1, 0.9, 1.3]  # CIs ±0.196: the last one misses 1.0
    est = dict.fromkeys(bench_dml.ESTIMATORS, [1.0] * 4) | {"jepa_dml": jepa}
    table, stats = bench_dml.summarise(_records(est, dict.fromkeys(bench_dml.ESTIMATORS, 0.1)))
    s = stats["jepa_dml"]
    assert s["coverage"] == pytest.approx(0.75)
    assert s["coverage_mcse"] == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
    assert s["bias"] == pytest.approx(0.075)
    assert s["bias_mcse"] == pytest.approx(np.std(jepa, ddof=1) / 2)
    assert "| coverage in [0.90, 0.99] | 0.75 | no |" in table


def test_targets_are_met_only_when_every_condition_holds() -> None:
    rng = np.random.default_rng(0)
    truth_noise = rng.normal(0, 0.03, 40)
    est = {
        "jepa_dml": list(1.0 + truth_noise),
        "oracle_dml": list(1.0 + truth_noise),
        "naive": [1.9] * 40,
        "pixel_dml": list(1.4 + truth_noise),
        "doubleml_rf": list(1.5 + truth_noise),
    }
    table, _ = bench_dml.summarise(_records(est, dict.fromkeys(bench_dml.ESTIMATORS, 0.03)))
    assert _verdicts(table) == ["yes"] * 4
    est["jepa_dml"] = list(1.05 + truth_noise)  # biased by 0.05: > SE / 3, RMSE > 1.5 × the oracle's
    table, _ = bench_dml.summarise(_records(est, dict.fromkeys(bench_dml.ESTIMATORS, 0.03)))
    assert _verdicts(table) == ["no", "no", "no", "yes"]  # the CIs (±0.06) miss 1.0 too often as well


def test_a_run_without_per_fold_jepas_summarises_without_a_probe() -> None:
    # dml.pretrain=once trains its JEPA before the folds, so no fold reports a probe R².
    records = _records({name: [1.0, 1.1] for name in bench_dml.ESTIMATORS}, dict.fromkeys(bench_dml.ESTIMATORS, 0.1))
    for record in records:
        record["estimators"]["jepa_dml"]["probe_r2"] = None
    table, _ = bench_dml.summarise(records)
    assert "wall time per run: mean 60 s (max 60 s)." in table and "probe" not in table
    assert bench_dml._mean_or_none([None, 0.5, 0.7]) == pytest.approx(0.6)


def _verdicts(table: str) -> list[str]:
    rows = table.split("| JEPA-DML target |")[1].splitlines()[2:6]
    return [row.rsplit("|", 2)[1].strip() for row in rows]


def test_resume_fingerprint_follows_the_composed_settings_not_only_the_command_line() -> None:
    default = bench_dml.config_fingerprint([])
    assert bench_dml.config_fingerprint([]) == default
    assert bench_dml.config_fingerprint(["dml.k_folds=3"]) != default
    assert bench_dml.config_fingerprint(["data.pixel_noise=0.05"]) != default


def test_compare_pairs_replicates_by_seed() -> None:
    est = {name: [1.0, 1.2, 0.9] for name in bench_dml.ESTIMATORS}
    first = _records(est, dict.fromkeys(bench_dml.ESTIMATORS, 0.1))
    second = _records(est | {"jepa_dml": [1.0, 1.1, 0.95]}, dict.fromkeys(bench_dml.ESTIMATORS, 0.1))
    table = bench_dml.compare(first, second[::-1])  # order does not matter: seeds pair the replicates
    jepa = next(line for line in table.splitlines() if line.startswith("| jepa_dml"))
    # differences 0, -0.1, +0.05: mean -0.0167, SE sd/sqrt(3), 1 of 3 lower; mean abs error 0.1 → 0.05
    assert jepa == f"| jepa_dml | -0.0167 | {np.std([0, -0.1, 0.05], ddof=1) / np.sqrt(3):.4f} | 1/3 | -0.0500 |"
    assert "| naive | +0.0000 | 0.0000 | 0/3 | +0.0000 |" in table
    with pytest.raises(SystemExit, match="share 1 seed"):
        bench_dml.compare(first[:1], second)


def test_jepa_only_records_mark_the_baseline_targets_not_run_and_pair_with_a_full_benchmark() -> None:
    est = {name: [1.0, 1.2, 0.9] for name in bench_dml.ESTIMATORS}
    full = _records(est, dict.fromkeys(bench_dml.ESTIMATORS, 0.1))
    jepa_only = [{**r, "estimators": {k: r["estimators"][k] for k in ("jepa_dml", "naive")}} for r in full]
    table, stats = bench_dml.summarise(jepa_only)
    assert set(stats) == {"jepa_dml", "naive"}
    assert _verdicts(table)[2:] == ["n/a", "n/a"]
    assert "| RMSE ≤ 1.5 × oracle | oracle_dml not run | n/a |" in table
    paired = bench_dml.compare(full, jepa_only)
    assert [line.split(" | ")[0] for line in paired.splitlines()[4:]] == ["| jepa_dml", "| naive"]


def test_a_jepa_only_replicate_is_the_full_replicate_without_the_baselines(tmp_path) -> None:
    overrides = ["data.n_samples=120", "data.dims=[1,4,8,8]", "dml.k_folds=2", "dml.jepa_epochs=1",
                 "dml.convergence.patience=1", "dml.convergence.max_epochs=2", "model.rep_dim=12", "model.heads=2",
                 "model.pred_dim=6"]  # fmt: skip
    full = bench_dml.replicate(7, overrides, tmp_path / "full", rf_trees=5)
    only = bench_dml.replicate(7, overrides, tmp_path / "only", rf_trees=5, baselines=False)
    assert set(full) == set(bench_dml.ESTIMATORS) and set(only) == {"jepa_dml", "naive"}
    for name in only:
        assert only[name]["estimate"] == full[name]["estimate"]


def _running(pid: int) -> bool:
    """Is process `pid` still running? A zombie (exited, not yet reaped by its new parent) is not."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]  # Linux; elsewhere no /proc
    except FileNotFoundError:
        return not Path("/proc").is_dir()  # on Linux it has just gone; without /proc, kill(pid, 0) has answered
    return state != "Z"


def test_pool_workers_exit_when_the_benchmark_is_killed() -> None:
    """A SIGKILLed benchmark (no handler can run) leaves no worker computing: each exits when its parent is gone."""
    import os
    import signal
    import subprocess
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c", (
            "import time; from causal_engine.dml import benchmark as bench_dml\n"
            "from concurrent.futures import ProcessPoolExecutor\nfrom multiprocessing import get_context\n"
            "pool = ProcessPoolExecutor(1, mp_context=get_context('spawn'), initializer=bench_dml.pool_worker_init,"
            " initargs=(1,))\nprint(pool.submit(__import__('os').getpid).result(), flush=True)\n"
            "pool.submit(time.sleep, 600)\ntime.sleep(600)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _running(worker):
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"worker {worker} still ran 30 s after its parent was killed")
