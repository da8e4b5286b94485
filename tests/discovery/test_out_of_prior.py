"""The out-of-prior benchmark: its scoring helpers exactly, and scripts/bench_discovery.py --out-of-prior end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_engine.discovery import compare as C
from causal_engine.discovery.baselines import GraphData
from causal_engine.discovery.external import external_table

REPO = Path(__file__).resolve().parents[2]


def test_graph_batch_puts_each_single_target_regime_in_its_own_regime() -> None:
    g = external_table("sempler-linear", d=6, rows=50, seed=1, interventions=2)
    batch = C.graph_batch(g)
    assert batch.observational.shape == (1, 50, 6) and batch.interventional.shape == (1, 2, 25, 6)
    batch_targets = [batch.regime_targets[0, r].nonzero().flatten().tolist() for r in range(2)]
    assert sorted(batch_targets) == sorted(targets for targets, _ in g.regimes)
    for targets, x in g.regimes:  # regimes in table_batch's order
        assert np.allclose(batch.interventional[0, batch_targets.index(targets)].numpy(), x, atol=1e-5)


def test_top_k_agreement_counts_shared_top_pairs() -> None:
    a = np.array([[0, 0.9, 0.8], [0.1, 0, 0.7], [0.2, 0.3, 0]])
    b = np.array([[0, 0.9, 0.1], [0.2, 0, 0.7], [0.8, 0.3, 0]])
    # top 2 of a: (0,1), (0,2); of b: (0,1), (2,0) -> one shared of two
    assert C.top_k_agreement(a, b, 2) == 0.5
    assert C.top_k_agreement(a, a, 3) == 1.0


def test_goals_compare_the_pfn_with_each_baseline_per_table() -> None:
    def row(method: str, auroc: float, shd: float, per_table: list[float], scaling: str = "raw") -> dict:
        metrics = {"auroc": auroc, "auprc": auroc / 2, "shd": shd, "sid": 0.3, "s_per_graph": 0.1, "ece": 0.02}
        metrics["per_table"] = per_table
        return {"method": method, "set": "s", "scaling": scaling, **metrics}

    rows = [
        row("causal PFN", 0.9, 10.0, [0.9, 0.7, 0.9]),
        row("boosted", 0.85, 12.0, [0.8, 0.8, 0.8]),
        row("abs-corr", 0.7, 30.0, [0.6, 0.75, 0.7]),
        row("partial-corr", 0.8, 20.0, [0.8, 0.8, 0.8]),
        row("PC", 0.6, 15.0, [0.6, 0.6, 0.6]),
    ]
    out = C.goals(rows)
    assert out["auroc_minus_boosted"] == pytest.approx(0.05)
    assert out["auroc_minus_abs-corr"] == pytest.approx(0.2)
    assert out["auroc_minus_partial-corr"] == pytest.approx(0.1)
    assert out["share_ahead_of_abs_corr"] == pytest.approx(2 / 3)
    assert out["shd_minus_PC"] == pytest.approx(-5.0) and np.isnan(out["shd_minus_GES"])
    both = [rows[0], {**rows[0], "scaling": "standardised"}, rows[1], {**rows[1], "scaling": "standardised"}]
    report = C.out_of_prior_report(both, {}, out)
    assert "shd_minus_GES: — (goal < 0.00: not run)" in report
    assert "auroc_minus_boosted: 0.050 (goal >= 0.00: met)" in report
    assert "| s | boosted | 0.850 | 0.850 |" in report
    assert "auroc_minus_boosted: 0.050 (goal >= 0.00: met); per table 0.033 ± 0.067 (standard error)" in report


def test_per_table_differences_weigh_sets_equally_with_the_tables_spread_as_error() -> None:
    def row(method: str, set_name: str, per_table: list[float], scaling: str = "raw") -> dict:
        return {"method": method, "set": set_name, "scaling": scaling, "per_table": per_table}

    rows = [
        row("causal PFN", "s", [0.9, 0.7, 0.8]),
        row("boosted", "s", [0.8, 0.8, 0.8]),
        row("causal PFN", "t", [0.9, 0.9]),
        row("causal PFN", "t", [0.9, 0.7], "standardised"),  # averaged with its raw copy: differences 0.2, 0.1
        row("boosted", "t", [0.7, 0.7]),
        row("boosted", "t", [0.7, 0.7], "standardised"),
    ]
    diff, se = C.per_table_differences(rows, "boosted")
    # set s: 0.1, -0.1, 0.0 (mean 0, variance 0.01); set t: 0.2, 0.1 (mean 0.15, variance 0.005)
    assert diff == pytest.approx(0.075)
    assert se == pytest.approx(np.sqrt(0.01 / 3 + 0.005 / 2) / 2)
    assert all(np.isnan(C.per_table_differences(rows, "PC")))


def test_scale_free_methods_reuse_the_raw_row_and_gies_skips_observational_sets() -> None:
    calls: list[int] = []

    def method(g: GraphData) -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        s = np.abs(np.corrcoef(g.observational, rowvar=False))
        return s, s > 0.5

    tables = [external_table("cdt-linear", d=5, rows=40, seed=s) for s in range(2)]
    rows = C.out_of_prior({"abs-corr": method, "GIES": method, "other": method}, {"obs": tables})
    assert [(r["method"], r["scaling"]) for r in rows] == [
        ("abs-corr", "raw"),
        ("abs-corr", "standardised"),
        ("other", "raw"),
        ("other", "standardised"),
    ]
    assert len(calls) == 2 + 4 and rows[0]["auroc"] == rows[1]["auroc"]


def test_the_cache_serves_the_same_tables_and_never_other_ones(tmp_path: Path) -> None:
    calls: list[int] = []

    def method(g: GraphData) -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        s = np.abs(np.corrcoef(g.observational, rowvar=False))
        return s, s > 0.5

    def run(seed: int) -> list[dict]:
        tables = [external_table("cdt-linear", d=5, rows=40, seed=seed)]
        return C.out_of_prior({"PC": method}, {"obs": tables}, cache=tmp_path)

    first = [r["auroc"] for r in run(0)]
    assert [r["auroc"] for r in run(0)] == first and len(calls) == 1  # read back, not rerun (PC is scale-free)
    run(1)  # same set name and settings, other tables: rerun
    assert len(calls) == 2 and len(list(tmp_path.iterdir())) == 2


@pytest.mark.slow
def test_discrete_row_scores_both_copies_and_sees_a_method_that_reads_the_row_order() -> None:
    tables = [external_table("sempler-linear", 6, 80, seed) for seed in range(2)]

    def corr(g: GraphData) -> tuple[np.ndarray, np.ndarray]:
        a = np.nan_to_num(np.abs(np.corrcoef(g.observational.T))) * (1 - np.eye(g.observational.shape[1]))
        return a, a > 0.5

    def first_rows(g: GraphData) -> tuple[np.ndarray, np.ndarray]:  # reads only the file's first 20 rows
        return corr(GraphData(g.observational[:20], g.regimes, g.adjacency))

    row = C.discrete_row(corr, tables)
    assert row["row_order_change"] < 1e-12 and 0 <= row["auroc_discrete"] <= 1
    assert row["auroc_continuous"] == np.mean([C.table_auroc(corr(g)[0], g.adjacency) for g in tables])
    assert C.discrete_row(first_rows, tables)["row_order_change"] > 0.05


def test_bench_out_of_prior_quick_mode_writes_its_tables(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    model = tmp_path / "pairwise.txt"
    train = [sys.executable, str(REPO / "scripts" / "train_pairwise.py"), "--cpu-minutes", "0.02", "--nodes", "4", "6"]
    train += ["--rounds", "3", "--pair-fraction", "1", "--override", "data.prior.num_obs=[40,80]", "--out", str(model)]
    subprocess.run(train, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    assert model.is_file() and model.with_suffix(".json").is_file()
    copula = tmp_path / "pairwise_copula.txt"
    train[train.index(str(model))] = str(copula)
    subprocess.run([*train, "--copula"], check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    out = tmp_path / "bench"
    bench = [sys.executable, str(REPO / "scripts" / "bench_discovery.py"), "--out-of-prior", "--tables", "2"]
    bench += ["--d", "5", "--rows", "60", "--interventions", "2", "--families", "sempler-linear", "cdt-linear"]
    bench += ["--methods", "abs-corr", "partial-corr", "PC", "GIES", "--pairwise", str(model), "--out", str(out)]
    bench += ["--pairwise-copula", str(copula)]
    subprocess.run(bench, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=900)
    rows = pd.read_csv(out / "rows.csv")
    sets = {"sempler-linear", "sempler-linear+int", "cdt-linear", "sachs"}  # the measured set by default
    assert set(rows["set"]) == sets and set(rows["scaling"]) == {"raw", "standardised"}
    for method in ("causal PFN", "boosted", C.BOOSTED_COPULA, "abs-corr", "partial-corr", "PC"):
        assert set(rows.loc[rows["method"] == method, "set"]) == sets
    assert set(rows.loc[rows["method"] == "GIES", "set"]) == {"sempler-linear+int"}
    assert rows["auroc"].between(0, 1).all() and (rows["shd"] >= 0).all()
    # SID for every graph-valued answer: the PFN's DAG always, PC's CPDAG where it orients an edge; never for
    # a skeleton score; never against Sachs's cyclic consensus graph
    simulated = rows["set"] != "sachs"
    assert rows.loc[simulated & (rows["method"] == "causal PFN"), "sid"].between(0, 1).all()
    assert rows.loc[~simulated, "sid"].isna().all()
    assert rows.loc[rows["method"] == "PC", "sid"].between(0, 1).any()
    assert rows.loc[rows["method"] == "abs-corr", "sid"].isna().all()
    report = (out / "README.md").read_text()
    assert "Discrete columns" in report and "| causal PFN | " in report.split("Discrete columns")[1]
    per_table = pd.read_csv(out / "per_table.csv")
    assert len(per_table) == 2 * simulated.sum() + (~simulated).sum()  # 2 tables per simulated set, Sachs is 1
    readme = (out / "README.md").read_text()
    for text in (
        "--out-of-prior",
        "Monotone transforms",
        "auroc_minus_boosted",
        f"no goal: auroc_minus_{C.BOOSTED_COPULA}",
        "share_ahead_of_abs_corr",
        "ECE",
        "SID",
        "Measured data",
        "| sachs | causal PFN |",
    ):
        assert text in readme
    # the measured set stays out of the simulated sets' means: 3 sets, not 4
    assert "| causal PFN | 3 |" in readme
    assert (out / "reliability.png").stat().st_size > 0
    # the copula-input model gives every monotone copy of a table the same edges
    monotone = readme.split("Monotone transforms")[1].split("\n\n")[1]
    line = next(x for x in monotone.splitlines() if x.startswith(f"| {C.BOOSTED_COPULA} |"))
    assert line.split(" | ")[4:] == ["0.000", "1.000", "1.000 |"]  # gap, top-k raw=log, top-k raw=rank
    # the classical baselines are cached per set, the PFN and the boosted model never are
    cached = {(p.parent.name.rsplit("-", 1)[0], p.name) for p in (out / "cache").rglob("*.json")}
    assert ("cdt-linear", "PC.json") in cached and ("sempler-linear+int", "GIES.json") in cached
    assert not any("PFN" in name or "boosted" in name for _, name in cached)
