"""DML diagnostics: the AIPW remainder that splits a simulated run's error into nuisance bias and noise, and the
diagnostics that reuse a benchmark's saved JEPAs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from causal_engine.dml import benchmark, diagnostics


def test_remainder_is_zero_when_either_nuisance_is_exact():
    rng = np.random.default_rng(0)
    e, g0 = rng.uniform(0.1, 0.9, 50), rng.normal(size=50)
    g1 = g0 + 1.0
    wrong_m, wrong_g0, wrong_g1 = rng.uniform(0.1, 0.9, 50), rng.normal(size=50), rng.normal(size=50)
    np.testing.assert_allclose(diagnostics.aipw_remainder(wrong_g0, wrong_g1, e, e, g0, g1), 0.0, atol=1e-15)
    np.testing.assert_allclose(diagnostics.aipw_remainder(g0, g1, wrong_m, e, g0, g1), 0.0, atol=1e-15)


def test_remainder_matches_a_hand_computation():
    # ê = 0.5, e = 0.25, both outcome heads 1 too high: 0.25 · (1 / 0.5 + 1 / 0.5) = 1.
    one = np.ones(1)
    assert diagnostics.aipw_remainder(one, 2 * one, 0.5 * one, 0.25 * one, 0 * one, one)[0] == pytest.approx(1.0)


def test_remainder_is_the_expected_error_of_the_aipw_score():
    # Fixed wrong nuisances; T and Y drawn many times given U: mean ψ - τ converges to the mean remainder.
    rng = np.random.default_rng(1)
    n = 400_000
    x = rng.uniform(-1, 1, n)
    e, g0 = 1 / (1 + np.exp(-1.5 * x)), 1.5 * x
    g1 = g0 + 1.0
    m_hat, g0_hat, g1_hat = 1 / (1 + np.exp(-0.8 * x)), 0.7 * x, 0.7 * x + 1.2
    d = (rng.uniform(size=n) < e).astype(float)
    y = np.where(d == 1, g1, g0) + 0.5 * rng.normal(size=n)
    psi = g1_hat - g0_hat + d * (y - g1_hat) / m_hat - (1 - d) * (y - g0_hat) / (1 - m_hat)
    remainder = diagnostics.aipw_remainder(g0_hat, g1_hat, m_hat, e, g0, g1)
    noise = psi - 1.0 - remainder  # mean zero given U
    assert abs(remainder.mean()) > 0.1  # the wrong nuisances do leave a bias
    assert abs(noise.mean()) < 4 * noise.std() / np.sqrt(n)


def test_bench_decomposition_with_the_true_nuisances_is_all_sampling_noise(tmp_path):
    # A fake one-replicate benchmark whose saved folds hold the true g and e: the error is exactly the oracle's
    # sampling noise, with no remainder and nothing left over.
    import json

    from causal_engine.dml.simulate import baseline_outcome, simulate_videos

    s = simulate_videos(2000, seed=7)
    g0 = baseline_outcome(s.confounders)
    folds = np.array_split(np.random.default_rng(0).permutation(2000), 5)
    for k, test in enumerate(folds):
        path = tmp_path / "runs" / "seed7" / "rep0" / f"fold{k}"
        path.mkdir(parents=True)
        np.savez(path / "oof.npz", test=test, g0=g0[test], g1=g0[test] + s.tau[test], m=s.propensity[test])
    (tmp_path / "replicates.jsonl").write_text(json.dumps({"seed": 7, "overrides": []}) + "\n")
    table = benchmark.decompose_bench(tmp_path).splitlines()
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table[4:8]}
    assert rows["AIPW remainder"] in ("+0.000", "-0.000")
    assert rows["the rest (noise × nuisance-error cross terms)"] in ("+0.000", "-0.000")
    assert rows["JEPA-DML error"] == rows["sampling noise (AIPW with the true nuisances)"] != "+0.000"
    shares = [line.split("|")[2].strip() for line in table[11:]]
    assert len(shares) == len(diagnostics.E_BINS) - 1 and set(shares) <= {"+0.0000", "-0.0000"}


def test_remainder_shares_by_propensity_sum_to_the_remainder():
    from omegaconf import OmegaConf

    from causal_engine.dml.simulate import baseline_outcome, simulate_videos

    s = simulate_videos(2000, seed=3)
    g0 = baseline_outcome(s.confounders)
    shrunk = {"g0": 0.7 * g0, "g1": 0.7 * g0 + s.tau, "m": 0.5 + 0.6 * (s.propensity - 0.5)}
    p = diagnostics.decompose(OmegaConf.create({"dml": {"trim": 0.01}}), s, shrunk)
    assert sum(p["remainder_by_e"]) == pytest.approx(p["remainder"], abs=1e-12)
    # Both nuisances shrunk towards the middle: every bin's share is positive, the remainder clearly so.
    assert min(p["remainder_by_e"]) >= 0 and p["remainder"] > 5 * p["remainder_se"]


def test_pixel_bound_reads_the_confounders_and_falls_with_the_noise():
    clean = diagnostics.pixel_bound(["data.pixel_noise=0", "data.texture_contrast=0", "data.distractor=0"])
    noisy = diagnostics.pixel_bound(["data.pixel_noise=0.1", "data.texture_contrast=0.1"])
    assert min(clean[k] for k in ("x0", "y0", "vx", "vy")) > 0.99
    assert all(noisy[k] < clean[k] for k in ("x0", "y0", "vx", "vy"))


def test_supervised_bound_reads_the_confounders_and_falls_when_the_frames_hide_them():
    # Tiny: 240 training videos, a 1-block 16-wide encoder, 100 steps; pixel noise of sd 1 buries the object.
    tiny = ["data.n_samples=300", "model.rep_dim=16", "model.depth=1"]
    kwargs = {"epochs": 25, "n_train": 240, "n_test": 60}
    clear = diagnostics.supervised_bound(tiny, **kwargs)
    hidden = diagnostics.supervised_bound([*tiny, "data.pixel_noise=1.0"], **kwargs)
    assert list(clear) == ["x0", "y0", "vx", "vy", "size", "brightness", "f", "g"]
    assert clear["x0"] > 0.5 and clear["brightness"] > 0.5
    assert np.mean(list(hidden.values())) < np.mean(list(clear.values())) - 0.2
    with pytest.raises(ValueError, match="n_samples"):
        diagnostics.supervised_bound(tiny, n_train=300, n_test=60)


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory) -> Path:
    """One tiny real `bench_dml.py` replicate: its per-fold JEPA checkpoints are what the comparisons load."""
    import json

    out = tmp_path_factory.mktemp("bench")
    overrides = ["data.n_samples=120", "data.dims=[1,4,8,8]", "dml.k_folds=2", "dml.jepa_epochs=1",
                 "dml.convergence.patience=1", "dml.convergence.max_epochs=2", "model.rep_dim=12", "model.heads=2",
                 "model.pred_dim=6"]  # fmt: skip
    rows = benchmark.replicate(7, overrides, out / "runs", rf_trees=5)
    record = {"seed": 7, "overrides": overrides, "estimators": rows}
    (out / "replicates.jsonl").write_text(json.dumps(record) + "\n")
    return out


def test_readouts_of_a_benchmark_reuse_its_jepas_and_compare_every_pooling(tiny_bench, tmp_path):
    table = benchmark.compare_readouts(tiny_bench, replicates=1, workdir=tmp_path / "readouts").splitlines()
    assert table[0].startswith("2 folds of 1 replicates")
    by_name = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table[4:]}
    assert set(by_name) == {"target/frames_xy", "target/frames_max", "target/frames_std", "target/frames",
                            "target/mean", "U projected from frames_xy", "true U"}  # fmt: skip
    # Widths: T' = 2 time steps × (mean, std, max[, x, y]) × 12; the true U has six columns; R² of U from U is 1.
    widths = [int(by_name[k][1]) for k in ("target/frames_xy", "target/frames_max", "target/frames_std", "true U")]
    assert widths == [120, 72, 48, 6]
    assert all(float(x) > 0.999 for x in by_name["true U"][2:8])
    # The differences are paired against the configured pooling (frames_xy).
    assert table[2].endswith("| vs target/frames_xy (SE) |")
    assert by_name["target/frames_xy"][-1].strip(" |") == "+0.0000 (0.0000)"
    # `pools` limits the refits to those named, plus the configured pooling and the two references.
    few = benchmark.compare_readouts(tiny_bench, replicates=1, pools=["mean"], workdir=tmp_path / "few").splitlines()
    names = {line.split(" | ")[0].lstrip("| ") for line in few[4:]}
    assert names == {"target/frames_xy", "target/mean", "U projected from frames_xy", "true U"}


def test_nuisance_variants_are_refit_on_the_benchmarks_jepas_and_paired(tiny_bench, tmp_path):
    # The configured networks, the same again spelled out (must reproduce them exactly), and a real change.
    variants = ["", "dml.convergence.max_epochs=2", "dml.convergence.max_epochs=6,dml.nuisance.outcome.hidden=8"]
    table = benchmark.compare_nuisances(tiny_bench, 1, variants, tmp_path / "nuisances").splitlines()
    assert table[0].startswith("1 replicates of ") and table[0].endswith("paired against (as configured)")
    cells = {line.split(" | ")[0].lstrip("| "): [c.strip(" |") for c in line.split(" | ")[1:]] for line in table[4:]}
    assert list(cells) == ["(as configured)", *variants[1:]]
    # bias, coverage, mean SE, remainder, outcome MSE, propensity BCE, Δ estimate, Δ remainder
    assert cells["(as configured)"][-2:] == ["+0.0000", "+0.0000"]
    assert cells["dml.convergence.max_epochs=2"] == cells["(as configured)"]
    changed = cells[variants[2]]
    assert changed[4] != cells["(as configured)"][4] and changed[-2] != "+0.0000"
    assert float(changed[-2]) == pytest.approx(float(changed[0]) - float(cells["(as configured)"][0]), abs=2e-4)
    assert changed[1] in ("0.00", "1.00") and float(changed[2]) > 0
