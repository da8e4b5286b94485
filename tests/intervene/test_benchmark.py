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


def test_main_tables_every_case_in_the_results_file_by_its_latest_record(tmp_path, monkeypatch):
    import json

    from causal_engine.intervene import benchmark

    def fake(case, out, trace=0):  # a record of the benchmark's shape, without fitting
        cols = ["default_seconds", "default_do_rmse", "generous_do_rmse", "do_ratio", "default_cf_rmse",
                "generous_cf_rmse", "cf_ratio", "default_do_coverage", "default_cf_coverage", "converged"]  # fmt: skip
        return {"case": case.name, "n": len(case.frame), "epochs": 1, **dict.fromkeys(cols, 0.5)}

    monkeypatch.setattr(benchmark, "bench_case", fake)
    monkeypatch.setattr(
        benchmark, "CASES", {name: benchmark.CASES[name] for name in ("nonlin_simpson", "chain3_nonlin")}
    )
    (tmp_path / "results.jsonl").write_text(json.dumps({**fake(benchmark.zoo_case("chain3_nonlin", 20, 0), None),
                                                        "default_do_rmse": 9.0}) + "\n")  # fmt: skip
    benchmark.main(["nonlin_simpson"], 20, 0, tmp_path)
    benchmark.main(["chain3_nonlin"], 20, 0, tmp_path)
    rows = [line for line in (tmp_path / "README.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| nonlin_simpson", "| chain3_nonlin"]  # CASES order
    assert "9.000" not in (tmp_path / "README.md").read_text()  # chain3_nonlin's earlier record is replaced
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3  # appended, never rewritten


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
    assert [r["epoch"] for r in trace] == [0, 1, 2] and all(r["lr"] == 0.003 for r in trace)
    written = _score(case, run_dir, with_intervals=False)
    assert trace[-1]["do_rmse"] == pytest.approx(written["do_rmse"], rel=1e-5)
    assert trace[-1]["cf_rmse"] == pytest.approx(written["cf_rmse"], rel=1e-5)
    assert trace[0]["do_rmse"] != pytest.approx(trace[-1]["do_rmse"], rel=1e-3)  # the answers move between epochs
