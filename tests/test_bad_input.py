"""Every user-facing entry fed malformed inputs: a clear UserError naming the problem, and no output files.

One table drives it: each entry (the table-reading tasks of the three systems) × each defect of a user's
file, plus the config values and graph defects that only some entries have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_engine.errors import UserError
from causal_engine.run import run

ROWS = 40


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=ROWS)
    t = (rng.random(ROWS) < 0.5).astype(float)
    return pd.DataFrame({"a": a, "b": a + rng.normal(size=ROWS), "t": t, "y": t + a + rng.normal(size=ROWS)})


def discover_entry(tmp: Path, path: Path) -> list[str]:
    return ["task=discover", "data=table", f"data.path={path}"]


def query_entry(tmp: Path, path: Path) -> list[str]:
    edges = tmp / "edges.csv"
    edges.write_text("source,target\na,b\na,y\nt,y\nb,y\n")
    return ["task=query", "data=table", f"data.path={path}", f"data.graph_path={edges}",
            "trainer=debug", "task.interventional={raise_a: {a: 1.0}}"]  # fmt: skip


def crossfit_table_entry(tmp: Path, path: Path) -> list[str]:
    return ["task=crossfit", "data=table", f"data.path={path}", "data.treatment=t", "data.outcome=y",
            "data.covariates=[a,b]", "dml.k_folds=2", "trainer=debug"]  # fmt: skip


def video_files_entry(tmp: Path, path: Path) -> list[str]:
    videos = tmp / "videos.npy"
    np.save(videos, np.random.default_rng(0).normal(size=(ROWS, 1, 4, 8, 8)).astype(np.float32))
    return ["experiment=jepa_dml", "data=video_files", f"data.videos={videos}", f"data.table={path}",
            "data.treatment=t", "data.outcome=y", "dml.k_folds=2", "trainer=debug"]  # fmt: skip


ENTRIES: dict[str, Callable[[Path, Path], list[str]]] = {
    "discover": discover_entry,
    "query": query_entry,
    "crossfit_table": crossfit_table_entry,
    "video_files": video_files_entry,
}


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def _with_cell(value: str) -> Callable[[pd.DataFrame], str]:
    def edit(frame: pd.DataFrame) -> str:
        frame = frame.astype(object)
        frame.loc[3, "y"] = value  # the outcome: a column every entry reads
        return _csv(frame)

    return edit


DEFECTS: dict[str, tuple[Callable[[pd.DataFrame], str | None], str]] = {
    "empty file": (lambda f: "", r"is empty \(0 bytes\)"),
    "header only": (lambda f: ",".join(f.columns) + "\n", "header but no data rows"),
    "wrong delimiter": (lambda f: _csv(f).replace(",", ";"), "looks delimited by ';'"),
    "NaN": (_with_cell("nan"), r"column 'y', row 4 .*missing value"),
    "inf": (_with_cell("inf"), r"column 'y', row 4 .*infinite"),
    "string in numeric column": (_with_cell("abc"), r"column 'y', row 4 .*'abc' is not a number"),
    "duplicate column names": (lambda f: _csv(f).replace("a,b,t,y", "a,a,t,y", 1), r"duplicate column names \['a'\]"),
    "path does not exist": (lambda f: None, "file not found"),
}


def _no_outputs(out: Path) -> bool:
    return not out.exists() or not [p for p in out.rglob("*") if p.is_file() and ".hydra" not in p.parts]


@pytest.mark.parametrize("defect", list(DEFECTS))
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_malformed_file_is_a_clear_error(entry, defect, compose, tmp_path):
    make, message = DEFECTS[defect]
    path = tmp_path / "data.csv"
    text = make(_frame())
    if text is not None:
        path.write_text(text)
    cfg = compose(ENTRIES[entry](tmp_path, path))
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert _no_outputs(Path(cfg.paths.output_dir))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment=jepa_dml", "data.n_samples=-5"], r"'data.n_samples' = -5 is too small"),
        (["experiment=jepa_dml", "dml.k_folds=1"], r"'dml.k_folds' = 1 is too small"),
        (["experiment=pfn", "model.optimizer.lr=-0.1"], r"'model.optimizer.lr' = -0.1 is too small"),
        (["experiment=structural_mlp", "data.n_train=0"], r"'data.n_train' = 0"),
        (["data=table"], r"Missing required config value\(s\): data.path"),
    ],
)
def test_bad_config_value_is_a_clear_error(overrides, message, compose):
    cfg = compose(overrides)
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert _no_outputs(Path(cfg.paths.output_dir))


def test_cyclic_graph_is_a_clear_error(compose, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(_csv(_frame()))
    overrides = query_entry(tmp_path, path)
    (tmp_path / "edges.csv").write_text("source,target\na,b\nb,y\ny,a\nt,y\n")
    cfg = compose(overrides)
    with pytest.raises(UserError, match="cycle"):
        run(cfg)
    assert _no_outputs(Path(cfg.paths.output_dir))


def test_crossfit_without_covariates_offers_the_tables_columns(compose, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(_csv(_frame()))
    overrides = [o for o in crossfit_table_entry(tmp_path, path) if not o.startswith("data.covariates")]
    with pytest.raises(UserError, match=r"needs data.covariates: .*the table's columns: a, b, t, y\. Covariates"):
        run(compose(overrides))
    assert not list(tmp_path.glob("**/metrics.json"))


def test_non_binary_treatment_is_a_clear_error(compose, tmp_path):
    frame = _frame()
    frame.loc[0, "t"] = 2.0
    path = tmp_path / "data.csv"
    path.write_text(_csv(frame))
    cfg = compose(crossfit_table_entry(tmp_path, path))
    with pytest.raises(UserError, match="binary"):
        run(cfg)
