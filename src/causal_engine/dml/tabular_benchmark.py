"""Tabular DML against DoubleML in the same process: matched learners, the same folds, three designs.

Each design draws one table, runs our fold loop (`run_crossfit` with `dml.learner=tabular`, the forest preset
unless an override picks another) and DoubleML's estimator with the same scikit-learn learners (same
hyperparameters and `random_state`) on our fold plan (`set_sample_splitting`), and reports both estimates, CIs
and wall times. With the same learners on the same rows the predictions agree, so the estimates may differ only
where the scores do (clipping rules).

  irm_ate   DoubleML's `make_irm_data` (binary treatment, ATE).
  att_pool  about 200 treated units against 16,000 controls, most of whom look nothing like the treated
            (e(x) near 0): the ATT, a small treated group compared with a general-population control pool.
  plr_cont  DoubleML's `make_plr_CCDDHNR2018` (continuous treatment, partially linear, partialling out).

`learner_study` asks a different question on the DoubleML designs: over many draws, which preset's intervals
cover (bias, spread, mean SE and coverage per design and learner).

`scripts/bench_tabular_dml.py` is the command line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from causal_engine.dml.coverage import rate_cell
from causal_engine.dml.crossfit import run_crossfit
from causal_engine.dml.data import CausalSample
from causal_engine.dml.folds import Fold
from causal_engine.errors import require_extra
from causal_engine.train import compose

DESIGNS = ("irm_ate", "att_pool", "plr_cont")


@dataclass(frozen=True)
class Design:
    """One benchmark table: covariates x [n, p], treatment d [n], outcome y [n], the score and the truth."""

    name: str
    score: str
    x: np.ndarray
    d: np.ndarray
    y: np.ndarray
    truth: float


def att_pool(n_treated: int = 200, n_control: int = 16_000, p: int = 10, seed: int = 0) -> Design:
    """A small treated group against a large control pool with poor overlap among the controls.

    Controls are drawn from the general population N(0, I); the treated from a shifted one (x1, x2 + 1.5), so
    most controls have e(x) near 0 and a few resemble the treated. The effect varies with x1, so the ATT (the
    mean effect on the treated draw, returned as `truth`) differs from the ATE.
    """
    rng = np.random.default_rng(seed)
    xc = rng.normal(size=(n_control, p))
    xt = rng.normal(size=(n_treated, p))
    xt[:, :2] += 1.5
    x = np.vstack([xt, xc])  # [n, p]
    d = np.r_[np.ones(n_treated), np.zeros(n_control)]
    tau = 1.0 + 0.5 * x[:, 0]  # [n]
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 + x[:, 2] + tau * d + rng.normal(size=len(d))
    return Design("att_pool", "att", x, d, y, float(tau[d == 1].mean()))


def make_design(name: str, seed: int = 0, n: int = 2000) -> Design:
    """The design `name` (`DESIGNS`) drawn with `seed`; `n` rows for the DoubleML generators."""
    require_extra("the DoubleML designs", "doubleml")
    from doubleml.irm.datasets import make_irm_data
    from doubleml.plm.datasets import make_plr_CCDDHNR2018

    np.random.seed(seed)  # DoubleML's generators draw from NumPy's global stream
    if name == "irm_ate":
        x, y, d = make_irm_data(n_obs=n, dim_x=20, theta=0.5, return_type="array")
        return Design(name, "ate", x, d.astype(float), y, 0.5)
    if name == "plr_cont":
        x, y, d = make_plr_CCDDHNR2018(n_obs=n, dim_x=20, alpha=0.5, return_type="array")
        return Design(name, "plr", x, d, y, 0.5)
    if name == "att_pool":
        return att_pool(seed=seed)
    raise ValueError(f"unknown design {name!r}; choose from {DESIGNS}")


# Both sides' learners get this random_state (presets whose estimator takes it at the top level: forest, hist_gb,
# lightgbm), so that they are the same estimators, not just the same kind.
RANDOM_STATE = 0


def ours(design: Design, overrides: list[str], workdir: Path) -> tuple[dict[str, float], list[Fold], DictConfig]:
    """Our fold loop on the design: its row (estimate, se, CI, seconds), its fold plan and its config."""
    cfg = compose(
        ["task=crossfit", "callbacks=none", "~logger", "dml.learner=tabular", "dml/tabular=forest",
         f"dml.score={design.score}", f"dml.tabular.outcome.random_state={RANDOM_STATE}",
         f"dml.tabular.propensity.random_state={RANDOM_STATE}",
         *overrides],
        workdir,
    )  # fmt: skip
    sample = CausalSample(torch.from_numpy(design.x).float(), design.d, design.y)
    start = time.perf_counter()
    out = run_crossfit(cfg, sample)
    seconds = time.perf_counter() - start
    r = out.result
    row = {"estimate": r.estimate, "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high, "seconds": seconds}
    return row, out.plan[0], cfg


def doubleml(design: Design, cfg: DictConfig, plan: list[Fold]) -> dict[str, float]:
    """DoubleML's estimator on the design with the learners of `cfg.dml.tabular` on our fold plan.

    The ATT is run without lower-tail clipping (trimming threshold 1e-12), as our ATT score does; the ATE with
    both tails clipped at `dml.trim`, as ours."""
    require_extra("the DoubleML comparison", "doubleml")
    from doubleml import DoubleMLData, DoubleMLIRM, DoubleMLPLR
    from hydra.utils import instantiate
    from sklearn.base import clone

    dml = cfg.dml
    x = design.x.astype(np.float32).astype(np.float64)  # the values our learners see (features are float32)
    data = DoubleMLData.from_arrays(x, design.y, design.d)
    outcome, propensity = (instantiate(dml.tabular[k], _convert_="all") for k in ("outcome", "propensity"))
    folds = [(f.train, f.test) for f in plan]
    if design.score == "plr":
        model = DoubleMLPLR(data, ml_l=outcome, ml_m=clone(outcome), n_folds=len(plan),
                            score="partialling out", draw_sample_splitting=False)  # fmt: skip
    else:
        trim = dml.trim if design.score == "ate" else 1e-12
        model = DoubleMLIRM(data, ml_g=outcome, ml_m=propensity, n_folds=len(plan),
                            score={"ate": "ATE", "att": "ATTE"}[design.score], trimming_threshold=trim,
                            draw_sample_splitting=False)  # fmt: skip
    model.set_sample_splitting(folds)
    start = time.perf_counter()
    model.fit()
    seconds = time.perf_counter() - start
    low, high = model.confint(level=dml.level).to_numpy()[0]
    return {"estimate": float(model.coef[0]), "se": float(model.se[0]), "ci_low": float(low),
            "ci_high": float(high), "seconds": seconds}  # fmt: skip


def compare(names: list[str], overrides: list[str], workdir: Path, seed: int = 0) -> tuple[str, list[dict]]:
    """Both estimators on each design: a markdown table and the raw rows."""
    rows = []
    for name in names:
        design = make_design(name, seed)
        mine, plan, cfg = ours(design, overrides, workdir / name)
        theirs = doubleml(design, cfg, plan)
        rows.append({"design": name, "score": design.score, "n": len(design.y), "treated": int(design.d.sum()),
                     "truth": design.truth, "ours": mine, "doubleml": theirs})  # fmt: skip
    lines = [
        "| design | score | n | truth | ours: estimate [95 % CI] | DoubleML: estimate [95 % CI] | "
        "|Δ| / DoubleML SE | ours s | DoubleML s | time ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["ours"], r["doubleml"]
        lines.append(
            f"| {r['design']} | {r['score']} | {r['n']} | {r['truth']:.3f} | {a['estimate']:.3f} "
            f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}] | {b['estimate']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}] "
            f"| {abs(a['estimate'] - b['estimate']) / b['se']:.3f} | {a['seconds']:.1f} | {b['seconds']:.1f} "
            f"| {a['seconds'] / b['seconds']:.2f} |"
        )
    return "\n".join(lines), rows


def learner_run(name: str, learner: str, seed: int, n: int, workdir: Path) -> dict[str, Any]:
    """One cross-fit of the design `name` drawn with seed 1000 + `seed` (`n` rows), `dml/tabular=learner`, the run's
    own seed `seed` (folds and learners): its estimate, SE, CI, the truth and the wall seconds."""
    design = make_design(name, seed=1000 + seed, n=n)
    cfg = compose(
        ["task=crossfit", "callbacks=none", "~logger", "dml.learner=tabular", f"dml.score={design.score}",
         f"dml/tabular={learner}", f"seed={seed}"],
        workdir / f"{learner}_{name}_{seed}",
    )  # fmt: skip
    start = time.perf_counter()
    r = run_crossfit(cfg, CausalSample(torch.from_numpy(design.x).float(), design.d, design.y)).result
    return {"seed": seed, "design": name, "learner": learner, "estimate": r.estimate, "se": r.se,
            "ci_low": r.ci_low, "ci_high": r.ci_high, "truth": design.truth,
            "seconds": time.perf_counter() - start}  # fmt: skip


def learner_study(
    names: list[str], learners: list[str], seeds: range, n: int, out: Path
) -> tuple[str, list[dict[str, Any]]]:
    """`learner_run` for every seed, design and learner, appended to out/replicates.jsonl as each finishes (a
    stopped study resumes where it was: runs already there are skipped), and the markdown table over the seeds
    every learner of a design has finished."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "replicates.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(r["design"], r["learner"], r["seed"]) for r in rows}
    for seed in seeds:
        for name in names:
            for learner in learners:
                if (name, learner, seed) not in done:
                    rows.append(learner_run(name, learner, seed, n, out / "runs"))
                    with path.open("a") as handle:
                        handle.write(json.dumps(rows[-1]) + "\n")
    return learner_table(rows, names, learners), rows


def learner_table(rows: list[dict[str, Any]], names: list[str], learners: list[str]) -> str:
    """Per design and learner, over the seeds every learner finished: bias ± its Monte Carlo SE, the estimates'
    SD, the mean reported SE, coverage with its exact interval, mean seconds."""
    lines = ["| design | learner | seeds | bias | SD of estimates | mean SE | coverage | s per run |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in names:
        runs = {(r["learner"], r["seed"]): r for r in rows if r["design"] == name}
        seeds = sorted({s for _, s in runs if all((lr, s) in runs for lr in learners)})
        for learner in learners:
            mine = [runs[learner, s] for s in seeds]
            if len(mine) < 2:
                continue
            err = np.array([r["estimate"] - r["truth"] for r in mine])
            hits = np.array([r["ci_low"] <= r["truth"] <= r["ci_high"] for r in mine])
            lines.append(
                f"| {name} | {learner} | {len(mine)} | {err.mean():+.4f} ± {err.std(ddof=1) / np.sqrt(len(err)):.4f} "
                f"| {err.std(ddof=1):.4f} | {np.mean([r['se'] for r in mine]):.4f} | {rate_cell(hits)} "
                f"| {np.mean([r['seconds'] for r in mine]):.1f} |"
            )
    return "\n".join(lines)
