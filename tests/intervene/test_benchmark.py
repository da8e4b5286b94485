"""The query benchmark's outside generators: their exact answers agree with the tables they produce."""

import numpy as np
import pytest

from causal_engine.intervene.benchmark import dowhy_case


def test_dowhy_case_scores_contrasts_with_the_treatments_coefficient():
    case = dowhy_case(2000, seed=0)
    assert list(case.frame.columns) == ["W0", "W1", "v0", "y"] and case.do_contrast
    assert sorted(map(tuple, case.edges.to_numpy())) == [("W0", "v0"), ("W0", "y"), ("W1", "v0"), ("W1", "y"),
                                                         ("v0", "y")]  # fmt: skip
    assert case.do_truth == pytest.approx(case.grid - case.grid[0], abs=1e-12)  # beta = 1
    assert case.cf_truth == pytest.approx(case.frame.y.to_numpy() + 1.0, abs=1e-12)
    # The documented outcome equation is linear in (W, v0): OLS recovers beta = 1 within 4 standard errors.
    design = np.column_stack([np.ones(len(case.frame)), case.frame[["W0", "W1", "v0"]].to_numpy()])
    coef, *_ = np.linalg.lstsq(design, case.frame.y.to_numpy(), rcond=None)
    resid = case.frame.y.to_numpy() - design @ coef
    se = np.sqrt(resid.var(ddof=4) * np.linalg.inv(design.T @ design)[3, 3])
    assert abs(coef[3] - 1.0) < 4 * se


def test_main_resumes_and_averages_each_case_over_its_seeds(tmp_path, monkeypatch):
    import json

    from causal_engine.intervene import benchmark

    ran = []

    def fake(case, out, trace=0):  # a record of the benchmark's shape, without fitting
        ran.append(case.name)
        cols = ["default_seconds", "generous_do_rmse", "default_cf_rmse", "generous_cf_rmse", "cf_ratio",
                "default_do_coverage", "default_cf_coverage", "converged"]  # fmt: skip
        rmse = 1.0 + len(ran)  # every fit a different default do RMSE against a generous 1.0
        return {"case": case.name, "n": len(case.frame), "epochs": 1, **dict.fromkeys(cols, 1.0),
                "default_do_rmse": rmse, "do_ratio": rmse}  # fmt: skip

    monkeypatch.setattr(benchmark, "bench_case", fake)
    monkeypatch.setattr(
        benchmark, "CASES", {name: benchmark.CASES[name] for name in ("nonlin_simpson", "chain3_nonlin")}
    )
    stored = {**fake(benchmark.zoo_case("chain3_nonlin", 20, 0), None), "seed": 0, "default_do_rmse": 9.0,
              "do_ratio": 9.0}  # fmt: skip
    (tmp_path / "results.jsonl").write_text(json.dumps(stored) + "\n")
    ran.clear()
    benchmark.main(["chain3_nonlin", "nonlin_simpson"], 20, [0, 1], tmp_path)
    assert ran == ["nonlin_simpson", "chain3_nonlin", "nonlin_simpson"]  # chain3_nonlin seed 0 is not re-run
    rows = [line.split(" | ") for line in (tmp_path / "README.md").read_text().splitlines() if line.startswith("| ")]
    assert [row[0] for row in rows[1:]] == ["| nonlin_simpson", "| chain3_nonlin"]  # CASES order
    chain3 = dict(zip(rows[0], rows[2], strict=True))
    # seed 0's stored 9.0 and seed 1's fresh 3.0: the mean over the seeds, the per-seed ratios' range
    assert chain3["seeds"] == "2" and chain3["default_do_rmse"] == "6.000" and chain3["do_ratio"] == "6.000"
    assert chain3["do_ratio_range"] == "3.00–9.00"
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 4  # appended, never rewritten


def test_answer_trace_scores_the_answers_the_run_writes(tmp_path):
    """With the last epoch's weights kept, the trace's last line is the score of the CSVs the task wrote."""
    import json

    from causal_engine.intervene.benchmark import _run_query, _score, zoo_case

    case = zoo_case("chain3_nonlin", 60, 0)
    run_dir = tmp_path / "run"
    overrides = ["task.convergence.patience=1", "task.convergence.decays=0", "task.convergence.max_epochs=3",
                 "task.convergence.restore_best=false", "task.bootstrap=0", "trainer=cpu"]  # fmt: skip
    _run_query(case, tmp_path, run_dir, overrides, trace=1)
    trace = [json.loads(line) for line in (run_dir / "trace.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in trace] == [0, 1, 2] and all(r["lr"] == 0.01 for r in trace)  # task.convergence.lr
    written = _score(case, run_dir, with_intervals=False)
    assert trace[-1]["do_rmse"] == pytest.approx(written["do_rmse"], rel=1e-5)
    assert trace[-1]["cf_rmse"] == pytest.approx(written["cf_rmse"], rel=1e-5)
    assert trace[0]["do_rmse"] != pytest.approx(trace[-1]["do_rmse"], rel=1e-3)  # the answers move between epochs
