"""task=crossfit's analyses after the cross-fit, end to end on a tiny table: sensitivity bounds (and the
benchmark refit), GATE and BLP files, and everything in the run's TensorBoard directory."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from causal_engine.config import ConfigError
from causal_engine.dml.analyses import BOUND_NAMES, without_features
from causal_engine.dml.crossfit import run_crossfit
from causal_engine.dml.sensitivity import Benchmark, benchmark_bounds, sensitivity_analysis, sensitivity_elements
from causal_engine.dml.store import load_out_of_fold
from causal_engine.errors import UserError
from causal_engine.run import run
from causal_engine.train import with_output_dir

from .conftest import table_overrides

FAST = [
    "dml.learner=network",
    "dml.convergence.max_epochs=2",
    "dml.convergence.patience=1",
    "dml.nuisance_batch_size=64",
]


def _table(path: Path, n: int = 240) -> Path:
    """Confounded table: x1 drives treatment and outcome, x2 only the outcome; the effect is 2 in group b, 0 in a."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2))
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-x[:, 0]))).astype(float)
    g = np.where(np.arange(n) % 2 == 0, "a", "b")
    y = x[:, 0] + 0.5 * x[:, 1] + np.where(g == "b", 2.0, 0.0) * d + rng.normal(scale=0.5, size=n)
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "t": d, "y": y, "g": g}).to_csv(path, index=False)
    return path


def _scalars(run_dir: Path) -> tuple[dict[str, float], EventAccumulator]:
    """The last value of every scalar in the run's TensorBoard directory, and the accumulator."""
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}, acc


def test_crossfit_writes_sensitivity_heterogeneity_and_tensorboard(compose, tmp_path):
    path = _table(tmp_path / "obs.csv")
    overrides = [
        *table_overrides(path),
        *FAST,
        "logger=tensorboard",
        "dml.sensitivity.benchmark=[x2]",
        "dml.gate.groups=g",
        "dml.blp.covariates=[x1]",
    ]
    cfg = compose(overrides)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)

    # The bounds are those of the stored out-of-fold predictions, at the configured strengths.
    oof = load_out_of_fold(out, 240)
    frame = pd.read_csv(path)
    elements = sensitivity_elements("ate", frame.y.to_numpy(), frame.t.to_numpy(), oof)
    expected = sensitivity_analysis([elements], cf_y=0.03, cf_d=0.03, rho=1.0, level=0.95).as_metrics()
    for key, value in expected.items():
        assert saved[key] == pytest.approx(value, rel=1e-12), key
    assert saved["dml/sensitivity/theta_lower"] < saved["dml/ate"] < saved["dml/sensitivity/theta_upper"]
    assert saved["dml/sensitivity/ci_low"] < saved["dml/sensitivity/theta_lower"]
    for key in ("cf_y", "cf_d", "rho", "delta_theta"):
        assert f"dml/sensitivity/benchmark/{key}" in saved, key
    assert 0.0 <= saved["dml/sensitivity/benchmark/cf_y"] <= 1.0
    # x2 explains outcome variance, so leaving it out raises the outcome's residual variance.
    assert saved["dml/sensitivity/benchmark/cf_y"] > 0.0
    assert (out / "sensitivity_benchmark" / "rep0" / "fold0" / "outcome").is_dir()  # the refit has its own dir
    # ... and the bounds an omitted confounder as strong as x2 would give (at the configured rho = 1).
    bench = Benchmark(*(saved[f"dml/sensitivity/benchmark/{k}"] for k in ("cf_y", "cf_d", "rho", "delta_theta")))
    at_bench = dict(zip(BOUND_NAMES, benchmark_bounds([elements], bench), strict=True))
    for key, value in at_bench.items():
        assert saved[key] == pytest.approx(value, rel=1e-12), key

    gate = pd.read_csv(out / "gate.csv")
    assert list(gate.name) == ["a", "b"] and list(gate.n) == [120, 120]
    assert saved["dml/gate/b"] == pytest.approx(gate.estimate[1])
    blp = pd.read_csv(out / "blp.csv")
    assert list(blp.name) == ["intercept", "x1"] and "dml/blp/x1/ci_high" in saved
    for name in ("sensitivity_contour", "gate", "blp", "ci"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0, name

    scalars, acc = _scalars(out)
    for key in (
        "dml/ate",
        "dml/se",
        "dml/ci_low",
        "dml/ci_high",
        "dml/naive",
        "dml/clipped_share",
        "dml/sensitivity/theta_lower",
        "dml/sensitivity/rva",
        "dml/fold2/outcome_mse",
        "dml/fold0/propensity_bce",
    ):
        assert scalars[key] == pytest.approx(saved[key], rel=1e-6), key
    hparam_tags = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparam_tags and "_hparams_/experiment" in hparam_tags
    assert {"dml/sensitivity_contour", "dml/gate", "dml/blp"} <= set(acc.Tags()["images"])


def test_resume_reuses_the_folds_and_reports_the_same_sensitivity(compose, tmp_path):
    path = _table(tmp_path / "obs.csv")
    cfg = compose([*table_overrides(path), *FAST])
    first = run(cfg)
    # A second run into the same directory with another scenario refits nothing and moves only the bounds.
    again = run(compose([*table_overrides(path), *FAST, "dml.sensitivity.cf_y=0.1"]))
    assert again["dml/ate"] == first["dml/ate"]
    assert again["dml/sensitivity/rv"] == first["dml/sensitivity/rv"]
    assert again["dml/sensitivity/theta_lower"] < first["dml/sensitivity/theta_lower"]


def test_plr_and_att_get_bounds(compose, tmp_path):
    path = _table(tmp_path / "obs.csv")
    for score in ("att", "plr"):
        # Separate run directories: plr fits other nuisances than att, so its folds are not att's.
        cfg = with_output_dir(compose([*table_overrides(path), *FAST, f"dml.score={score}"]), tmp_path / score)
        metrics = run(cfg)
        assert metrics["dml/sensitivity/theta_lower"] < metrics[f"dml/{score}"] < metrics["dml/sensitivity/theta_upper"]


@pytest.mark.parametrize(
    ("override", "key"),
    [("dml.sensitivity.cf_y=1.0", "dml.sensitivity.cf_y"), ("dml.sensitivity.rho=2", "dml.sensitivity.rho")],
)
def test_bad_sensitivity_config_fails_before_any_work(compose, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key):
        run(compose([*table_overrides(_table(tmp_path / "obs.csv")), override]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dml.sensitivity.benchmark=[x9]", r"\['x9'\] are not among data.covariates"),
        ("dml.sensitivity.benchmark=[x1,x2]", "names every covariate"),
        ("dml.blp.covariates=[x9]", "no column"),
    ],
)
def test_bad_analysis_columns_are_named_before_any_fold_is_fitted(compose, tmp_path, override, message):
    cfg = compose([*table_overrides(_table(tmp_path / "obs.csv")), "dml.convergence.max_epochs=2", override])
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert not list(Path(cfg.paths.output_dir).glob("rep*/fold*")), "a fold was fitted before the check"


def test_benchmark_refit_uses_the_same_folds(compose, tmp_path):
    path = _table(tmp_path / "obs.csv")
    cfg = compose([*table_overrides(path), *FAST])
    long = run_crossfit(cfg)
    short = run_crossfit(with_output_dir(cfg, tmp_path / "short"), sample=without_features(long.sample, ["x2"]))
    assert short.sample.feature_names == ("x1",)
    for a, b in zip(long.plan[0], short.plan[0], strict=True):
        np.testing.assert_array_equal(a.test, b.test)
