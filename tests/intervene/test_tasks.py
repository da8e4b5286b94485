"""Data, training and the query task end to end (small, seconds), and each bad-input case of task=query."""

import logging
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from causal_engine.errors import UserError
from causal_engine.graphs import unexplained_dependences
from causal_engine.intervene.data import ZooDataModule
from causal_engine.intervene.zoo import get_scm
from causal_engine.run import run


def test_zoo_datamodule_rows_masks_labels_and_seed():
    dm = ZooDataModule(
        "nonlin_simpson", n_train=200, interventional_fraction=0.25, counterfactual_fraction=0.5, n_test=100, seed=3
    )
    dm.setup("fit")
    x, cut, x_cf, has_cf = dm.train_set.tensors
    assert cut.sum() == 50 and cut[:, 1].sum() == 50 and torch.all(cut[150:, 1])  # do(x1) rows, x1 only
    assert has_cf.sum() == 75 and not has_cf[150:].any()  # labels only on observational rows
    expected = dm.scm.counterfactual(x[has_cf].double(), {"x1": {"shift": 1.0}})
    assert torch.allclose(x_cf[has_cf].double(), expected, atol=1e-5)
    loc, _ = dm.scaler()
    assert torch.isclose(loc[1], x[:150, 1].mean())  # scaling ignores the intervened values
    again = ZooDataModule("nonlin_simpson", n_train=200, interventional_fraction=0.25, n_test=100, seed=3)
    again.setup("fit")
    assert torch.equal(again.train_x, x) and torch.equal(again.truth.do_mean, dm.truth.do_mean)
    with pytest.raises(ValueError, match="interventional_fraction"):
        ZooDataModule("toy", interventional_fraction=1.5)


def test_structural_mlp_learns_a_linear_mediator_do_response(compose):
    """A short real fit: the structural model's E[x2 | do(x0 = v)] comes within 0.15 of the truth."""
    cfg = compose(
        [
            "experiment=structural_mlp",
            "data.scm=mediator_linear",
            "data.n_train=512",
            "data.interventional_fraction=0.0",
            "data.n_test=500",
        ]
    )
    dm, module = instantiate(cfg.data), instantiate(cfg.model)
    trainer = L.Trainer(
        max_epochs=40, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    torch.manual_seed(0)
    trainer.fit(module, datamodule=dm)
    found = module.answers(dm.test_x, dm.truth)
    assert float(found["do_rmse"]) < 0.15
    assert float(found["composition"]) < 1e-5


@pytest.fixture
def table(tmp_path: Path) -> tuple[Path, Path]:
    x = get_scm("mediator_linear").sample(120, torch.Generator().manual_seed(0)).numpy()
    data, edges = tmp_path / "data.csv", tmp_path / "edges.csv"
    pd.DataFrame(x, columns=["a", "b", "c"]).to_csv(data, index=False)
    pd.DataFrame({"source": ["a", "a", "b"], "target": ["b", "c", "c"]}).to_csv(edges, index=False)
    return data, edges


def _query(compose, data: Path, edges: Path, interventional: str = "{raise_a: {a: 1.0}}"):
    return compose(
        [
            "task=query",  # model=structural_mlp is task=query's default
            "data=table",
            f"data.path={data}",
            f"data.graph_path={edges}",
            "trainer=debug",
            f"task.interventional={interventional}",
            "task.counterfactual={a_up: {a: {shift: 1.0}}}",
            "task.rows=[0,5]",
        ]
    )


def test_query_end_to_end_on_a_small_csv(compose, table):
    cfg = _query(compose, *table)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    do = pd.read_csv(out / "interventional.csv")
    columns = ["query", "variable", "mean", "sd", "outside_support", "se", "ci_low", "ci_high"]
    assert list(do.columns) == columns and len(do) == 3
    a = do[do.variable == "a"].iloc[0]
    assert (a["mean"], a["sd"], a["se"], a["ci_low"], a["ci_high"]) == (1.0, 0.0, 0.0, 1.0, 1.0)  # do(a = 1) exactly
    assert (
        (do.ci_low <= do["mean"]).all() and (do["mean"] <= do.ci_high).all() and (do.se[do.variable != "a"] > 0).all()
    )
    cf = pd.read_csv(out / "counterfactual.csv")
    assert cf.row.tolist() == [0, 5]
    assert cf.a_cf.to_numpy() == pytest.approx(cf.a.to_numpy() + 1.0, abs=1e-5)
    for name in "abc":
        assert (cf[f"{name}_cf_low"] <= cf[f"{name}_cf"]).all() and (cf[f"{name}_cf"] <= cf[f"{name}_cf_high"]).all()
    assert metrics["query/raise_a/a"] == 1.0 and metrics["bootstrap/replicates"] == 20
    assert metrics["query/raise_a/c/ci_low"] < metrics["query/raise_a/c"] < metrics["query/raise_a/c/ci_high"]
    assert {"fit/converged", "fit/epochs", "fit/best_epoch", "fit/best_val_loss"} <= set(metrics)


def test_query_is_seeded_and_bootstrap_zero_drops_the_intervals(compose, table):
    first, second = _query(compose, *table), _query(compose, *table)
    second.paths.output_dir = str(Path(first.paths.output_dir).parent / "again")
    run(first), run(second)
    for name in ("interventional.csv", "counterfactual.csv"):
        assert pd.read_csv(Path(first.paths.output_dir) / name).equals(
            pd.read_csv(Path(second.paths.output_dir) / name)
        )
    cfg = _query(compose, *table)
    cfg.task.bootstrap = 0
    run(cfg)
    assert list(pd.read_csv(Path(cfg.paths.output_dir) / "interventional.csv").columns) == [
        "query", "variable", "mean", "sd", "outside_support"
    ]  # fmt: skip


def test_query_with_one_kind_of_question_bootstraps_without_warnings(compose, table):
    """Interventional questions only (and counterfactual only): the intervals of the kind asked, no warning about
    the other kind's empty bootstrap."""
    for dropped, kept, interval in (
        ("counterfactual", "interventional", "ci_low"),
        ("interventional", "counterfactual", "a_cf_low"),
    ):
        cfg = _query(compose, *table)
        cfg.task.bootstrap = 2
        cfg.task[dropped] = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*degrees of freedom.*")
            run(cfg)
        assert interval in pd.read_csv(Path(cfg.paths.output_dir) / f"{kept}.csv").columns


def test_query_reports_convergence_and_warns_when_the_ceiling_cuts_the_fit(compose, table, caplog):
    """A real (non-debug) fit: patience 3 and one decay on 96 rows converges; a ceiling of 3 epochs cannot and
    says which key."""
    cfg = _query(compose, *table)
    cfg.trainer = compose(["trainer=cpu"]).trainer
    cfg.callbacks = None
    cfg.task.bootstrap = 2
    cfg.task.convergence.patience = 3
    cfg.task.convergence.decays = 1
    caplog.set_level(logging.INFO, logger="causal_engine")
    metrics = run(cfg)
    assert metrics["fit/converged"] == 1.0 and metrics["fit/lr_decays"] == 1.0
    assert metrics["fit/epochs"] >= metrics["fit/best_epoch"] + 4
    assert "fit: converged" in caplog.text and "did not converge" not in caplog.text
    caplog.clear()
    cfg.task.convergence.patience = 1
    cfg.task.convergence.max_epochs = 3
    metrics = run(cfg)
    assert metrics["fit/converged"] == 0.0 and metrics["fit/epochs"] == 3
    assert "did not converge" in caplog.text and "Raise task.convergence.max_epochs (now 3)" in caplog.text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.bootstrap=1", "task.bootstrap=1"),
        ("task.level=1.5", "task.level"),
        ("task.convergence.patience=0", "task.convergence.patience"),
        ("task.convergence.max_epochs=10", "task.convergence.max_epochs=10 leaves no room"),
        ("task.convergence.lr=0", "task.convergence.lr"),
        ("task.support=1.0", "task.support must be in"),
        ("task.support_warning=2", "task.support_warning must be a share"),
    ],
)
def test_query_bad_bootstrap_and_convergence_settings_are_user_errors(compose, table, override, message):
    key, value = override.split("=")
    cfg = _query(compose, *table)
    OmegaConf.update(cfg, key, yaml.safe_load(value))
    with pytest.raises(UserError, match=message):
        run(cfg)


def test_query_says_which_answers_lie_outside_the_tables_support(compose, table, caplog):
    """do(b = 50) needs noise far beyond any b | a the table shows, for every row; do(a = its mean) on a root
    needs none; a unit shift of the root a leaves the support for the rows it takes past a's largest value."""
    data, edges = table
    mean_a = float(pd.read_csv(data).a.mean())
    cfg = _query(compose, data, edges, f"{{far: {{b: 50.0}}, centre: {{a: {mean_a}}}}}")
    cfg.task.rows = None
    caplog.set_level(logging.WARNING, logger="causal_engine")
    metrics = run(cfg)
    assert metrics["query/far/outside_support"] == 1.0 and metrics["query/centre/outside_support"] == 0.0
    assert 0.0 < metrics["query/a_up/outside_support"] < 0.5
    out = Path(cfg.paths.output_dir)
    do = pd.read_csv(out / "interventional.csv")
    assert (do[do["query"] == "far"].outside_support == 1.0).all()
    cf = pd.read_csv(out / "counterfactual.csv")
    top = cf.a.to_numpy() + 1.0 > cf.a.max()
    assert (
        top.any()
        and cf.outside_support.to_numpy()[top].all()
        and cf.outside_support.mean() == pytest.approx(metrics["query/a_up/outside_support"])
    )
    assert "outside the table's support: far (100 %)" in caplog.text and "centre" not in caplog.text


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cycle", "cycle"),
        ("unknown_column", "not columns of the data"),
        ("missing_from_graph", "missing from the graph"),
        ("nan", "missing value"),
        ("non_numeric", "not a number"),
        ("unknown_query_variable", "task.interventional.q intervenes on .zz., which is not a variable of the data"),
    ],
)
def test_query_bad_input_stops_with_a_clear_message(compose, table, tmp_path, case, message):
    data, edges = table
    frame = pd.read_csv(data)
    interventional = "{raise_a: {a: 1.0}}"
    if case == "cycle":
        edges = _write(tmp_path / "cyc.csv", "source,target\na,b\nb,c\nc,a\n")
    elif case == "unknown_column":
        edges = _write(tmp_path / "unk.csv", "source,target\na,b\nb,c\nz,c\n")
    elif case == "missing_from_graph":
        edges = _write(tmp_path / "miss.csv", "source,target\na,b\n")
    elif case == "nan":
        frame.loc[7, "b"] = float("nan")
        frame.to_csv(data, index=False)
    elif case == "non_numeric":
        frame["c"] = frame["c"].astype(object)
        frame.loc[3, "c"] = "high"
        frame.to_csv(data, index=False)
    else:
        interventional = "{q: {zz: 1.0}}"
    cfg = _query(compose, data, edges, interventional)
    with pytest.raises(UserError, match=message):
        run(cfg)
    out = Path(cfg.paths.output_dir)
    assert not (out / "interventional.csv").exists() and not (out / "counterfactual.csv").exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.interventional_fraction=1.0", "data.interventional_fraction"),
        ("data.n_train=3", "data.n_train"),
        ("model.losses.counterfactual_weight=-1", "model.losses.counterfactual_weight"),
        ("model.net.hidden_dims=[0]", "model.net.hidden_dims"),
    ],
)
def test_bad_config_values_fail_before_any_work(compose, override, key):
    with pytest.raises(UserError, match=key):
        run(compose(["experiment=structural_mlp", override]))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("task.discovery.threshold=1.5", "task.discovery.threshold"),
        ("task.discovery.steps=-1", "task.discovery.steps"),
        ("task.discovery.sparsity_weight=-0.1", "task.discovery.sparsity_weight"),
        ("task.discovery.explain_dependences=maybe", "task.discovery.explain_dependences"),
    ],
)
def test_bad_discovery_settings_fail_before_any_work(compose, table, override, key):
    data, _ = table
    cfg = _query(compose, data, Path("discover"))
    OmegaConf.update(cfg, override.split("=")[0], yaml.safe_load(override.split("=")[1]))
    with pytest.raises(UserError, match=key):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "graph_used.csv").exists()


def test_unknown_scm_is_a_user_error_listing_the_zoo(compose):
    with pytest.raises(UserError, match="nonlin_simpson"):
        run(compose(["experiment=structural_mlp", "data.scm=nope", "trainer=debug"]))


def test_query_with_a_regime_column_keeps_do_rows_out_of_the_cut_mechanism(compose, tmp_path):
    scm = get_scm("mediator_linear")
    obs = scm.sample(80, torch.Generator().manual_seed(0)).numpy()
    do = scm.sample(40, torch.Generator().manual_seed(1), {"x0": 3.0}).numpy()
    frame = pd.DataFrame(list(obs) + list(do), columns=["a", "b", "c"])
    frame["regime"] = [""] * 80 + ["a"] * 40
    data, edges = tmp_path / "reg.csv", tmp_path / "edges.csv"
    frame.to_csv(data, index=False)
    pd.DataFrame({"source": ["a", "a", "b"], "target": ["b", "c", "c"]}).to_csv(edges, index=False)
    cfg = _query(compose, data, edges)
    cfg.data.regime_column = "regime"
    run(cfg)
    cf = pd.read_csv(Path(cfg.paths.output_dir) / "counterfactual.csv")
    answers = [f"{n}_cf{e}" for n in "abc" for e in ("", "_low", "_high")]
    assert list(cf.columns) == ["query", "row", "outside_support", *answers, "a", "b", "c"]
    frame.loc[3, "regime"] = "zz"
    frame.to_csv(data, index=False)
    with pytest.raises(UserError, match="row 4: 'zz' is not a variable"):
        run(cfg)


def test_array_datamodule_validates_on_observational_rows_only():
    from causal_engine.intervene.data import ArrayDataModule, GraphInfo

    x = torch.arange(100.0).reshape(50, 2)
    cut = torch.zeros(50, 2, dtype=torch.bool)
    cut[:20, 0] = True
    graph = GraphInfo(["a", "b"], torch.tensor([[0.0, 1.0], [0.0, 0.0]]).numpy(), 0, 1)
    dm = ArrayDataModule(x, graph, cut, val_fraction=0.5, seed=0)
    assert len(dm.val_x) == 15 and bool((dm.val_x[:, 0] >= 40).all())  # rows 20.. are the observational ones
    assert len(dm.train_x) == 35 and int(dm.train_set.tensors[1].sum()) == 20


def test_structural_mlp_run_writes_metrics_and_the_do_response_figure(compose):
    cfg = compose(["experiment=structural_mlp", "trainer.max_epochs=1", "data.n_train=64", "data.n_test=50",
                   "callbacks.progress_bar=null"])  # fmt: skip
    metrics = run(cfg)
    assert {"test/do_rmse", "test/mmd", "test/ate_error", "test/cf_rmse", "test/composition"} <= set(metrics)
    assert (Path(cfg.paths.output_dir) / "figures" / "do_response.png").stat().st_size > 0


def test_phase1_summary_is_scored_against_the_exact_truth_and_logged_to_tensorboard(compose):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose(["experiment=causal_mlp_phase1", "trainer.max_epochs=1", "data.n_train=64", "data.n_test=50",
                   "callbacks.progress_bar=null"])  # fmt: skip
    metrics = run(cfg)
    assert metrics["truth/do_answer"] == 1.0  # toy: E[y | do(x2 = 0.5)] = 2 · 0.5, analytic
    for name in ("mlp", "structural_mlp"):
        assert metrics[f"{name}/do_answer_error"] == abs(metrics[f"{name}/do_answer"] - 1.0)
    out = Path(cfg.paths.output_dir)
    assert (out / "phase1_training_summary.png").stat().st_size > 0
    images = []
    for path in (out / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(path), size_guidance={"images": 0})
        acc.Reload()
        images += acc.Tags()["images"]
    assert "phase1/training_summary" in images


def test_query_warns_when_the_graph_cannot_explain_the_tables_dependences(compose, table, tmp_path, caplog):
    """mediator_linear is a -> b -> c, a -> c; a graph with only b -> c makes a independent of b and c, which
    the rows contradict: both pairs are named, with the count as a metric. The true graph explains them all."""
    data, edges = table
    partial = _write(tmp_path / "partial.csv", "source,target\nb,c\na,\n")
    caplog.set_level(logging.WARNING, logger="causal_engine")
    metrics = run(_query(compose, data, partial))
    assert metrics["graph/unexplained_dependences"] == 2.0
    warned = [r.getMessage() for r in caplog.records if "show dependent" in r.getMessage()]
    assert len(warned) == 1 and "a~b" in warned[0] and "a~c" in warned[0] and str(partial) in warned[0]
    caplog.clear()
    assert run(_query(compose, data, edges))["graph/unexplained_dependences"] == 0.0
    assert "show dependent" not in caplog.text


def test_unexplained_dependences_test_only_pairs_the_graph_separates_at_the_bonferroni_level():
    rng = np.random.default_rng(0)
    n = 400
    a, noise = rng.normal(size=n), rng.normal(size=(n, 2))
    frame = pd.DataFrame({"a": a, "b": np.exp(a + noise[:, 0]), "c": noise[:, 1]})  # b depends on a, c on nothing
    empty = np.zeros((3, 3))
    assert [(i, j) for i, j, _ in unexplained_dependences(frame, empty)] == [("a", "b")]
    explained = np.zeros((3, 3))
    explained[0, 1] = 1.0
    assert unexplained_dependences(frame, explained) == []
    # A common cause explains a dependence too: c -> a, c -> b leaves no pair the graph separates.
    fork = np.zeros((3, 3))
    fork[2, 0] = fork[2, 1] = 1.0
    assert unexplained_dependences(frame, fork) == []
    # Independent columns stay silent at the corrected level over many seeds' worth of pairs.
    wide = pd.DataFrame(rng.normal(size=(n, 12)))
    assert unexplained_dependences(wide, np.zeros((12, 12))) == []
