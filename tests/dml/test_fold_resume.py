"""The fold loop saves each finished fold and resumes at the first unfinished one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_engine.dml import crossfit
from causal_engine.errors import UserError
from causal_engine.run import run


@pytest.fixture
def table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    t = (rng.random(300) < 1 / (1 + np.exp(-a))).astype(float)
    path = tmp_path / "obs.csv"
    pd.DataFrame({"a": a, "t": t, "y": 2 * t + a + rng.normal(size=300)}).to_csv(path, index=False)
    return path


def overrides(path: Path, *extra: str) -> list[str]:
    return ["task=crossfit", "data=table", f"data.path={path}", "data.treatment=t", "data.outcome=y",
            "data.covariates=[a]", "dml.k_folds=3", "callbacks.progress_bar=null",
            *extra]  # fmt: skip


def test_killed_fold_loop_resumes_at_the_first_unfinished_fold(compose, table, monkeypatch):
    cfg = compose(overrides(table))
    first = run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = sorted(out.glob("rep0/fold*/oof.npz"))
    assert [p.parent.name for p in saved] == ["fold0", "fold1", "fold2"]

    fitted = []
    fit_fold = crossfit.fit_fold
    monkeypatch.setattr(crossfit, "fit_fold", lambda *a, **k: fitted.append(a[2].k) or fit_fold(*a, **k))
    saved[2].unlink()  # as if the run had been killed during the last fold
    again = run(compose(overrides(table)))
    assert fitted == [2]
    assert again["dml/ate"] == pytest.approx(first["dml/ate"], abs=1e-9)
    assert again["dml/se"] == pytest.approx(first["dml/se"], abs=1e-9)

    fitted.clear()  # an inference-only setting reuses every fold
    run(compose(overrides(table, "dml.level=0.9")))
    assert fitted == []

    with pytest.raises(UserError, match="holds a fold of a different run"):
        run(compose(overrides(table, "seed=7")))
