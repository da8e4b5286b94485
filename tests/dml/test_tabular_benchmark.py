"""Tabular DML against DoubleML: with the same learners on the same folds the two estimates agree."""

from __future__ import annotations

import pytest

from causal_engine.dml import tabular_benchmark
from causal_engine.dml.tabular_benchmark import att_pool, doubleml, learner_study, make_design, ours

SMALL_FOREST = ["dml.k_folds=3", "dml.tabular.outcome.n_estimators=20", "dml.tabular.propensity.n_estimators=20"]


@pytest.mark.parametrize("name", ["irm_ate", "att_pool", "plr_cont"])
def test_ours_and_doubleml_agree_with_matched_learners_and_folds(name, tmp_path):
    design = att_pool(n_treated=40, n_control=600, p=4) if name == "att_pool" else make_design(name, n=300)
    mine, plan, cfg = ours(design, SMALL_FOREST, tmp_path)
    theirs = doubleml(design, cfg, plan)
    # The same estimators see the same rows, so the predictions and the scores agree to rounding.
    assert mine["estimate"] == pytest.approx(theirs["estimate"], abs=1e-6 * theirs["se"] + 1e-9)
    assert mine["se"] == pytest.approx(theirs["se"], rel=1e-6)
    assert mine["seconds"] > 0 and theirs["seconds"] > 0


def test_the_learner_study_scores_every_run_resumes_and_tables_the_coverage(tmp_path, monkeypatch):
    table, rows = learner_study(["plr_cont"], ["lasso"], range(2), 200, tmp_path)
    assert [(r["seed"], r["learner"]) for r in rows] == [(0, "lasso"), (1, "lasso")]
    for r in rows:
        assert r["truth"] == 0.5 and r["ci_low"] < r["estimate"] < r["ci_high"] and r["seconds"] > 0
    hits = sum(r["ci_low"] <= 0.5 <= r["ci_high"] for r in rows)
    assert "| plr_cont | lasso | 2 |" in table and f"({hits}/2)" in table
    # A rerun reads the finished runs back and fits nothing.
    monkeypatch.setattr(tabular_benchmark, "learner_run", lambda *a: pytest.fail("refitted a finished run"))
    again, rows_again = learner_study(["plr_cont"], ["lasso"], range(2), 200, tmp_path)
    assert again == table and rows_again == rows
