"""Is `task=query` right at its defaults? Defaults vs a generous budget, with interval coverage.

Each case is a table with exact answers: E[Y | do(X = v)] over 5 quantiles of X (population values) and
every row's counterfactual Y under do(X := X + 1). Zoo SCMs give both from their equations. Two generators
nobody here wrote: `sempler.LGANM`, a linear Gaussian SCM whose own interventional sampler gives
E[Y | do] by Monte Carlo (2·10⁵ draws) and whose linearity gives each row's counterfactual (Y + total
effect · shift); and `dowhy.datasets.linear_dataset`, whose documented outcome equation gives the do-curve's
contrasts against its first grid point (its level is not exact: scored as a contrast, no do coverage) and each row's
counterfactual. Both arms run the real `task=query` through `run()`:

- `default`: the task's defaults (the plateau schedule, best held-out weights, bootstrap intervals);
- `generous`: the same model and stopping rule with every budget 10× the default's: 10× the patience on each
  plateau and a ceiling of 10× the default run's epochs, no bootstrap. It answers "would fitting far longer
  change the answer?" with a settled fit. A constant-rate fit's last epoch does not: its iterates wander in
  directions the held-out loss hardly sees, so it is a noisy reference (nonlin_simpson, 500 rows: best
  held-out loss at epoch 171 of 2230 and the last epoch's within 1 % of the default fit's, yet do RMSE 1.34
  against the default's 0.39).

Scores: RMSE of the interventional means over the grid and of the counterfactuals over the rows,
the default run's wall time, the share of the exact answers inside the default run's intervals, and the
share of rows the do-queries take outside the table's support (`outside_support`, mean over the grid).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, open_dict

from causal_engine import config  # noqa: F401  (registers the ${ce.root:} resolver of conf/paths)
from causal_engine.errors import require_extra
from causal_engine.intervene.do import Interventions
from causal_engine.intervene.zoo import get_scm
from causal_engine.train import compose

SHIFT = 1.0
GENEROUS = 10  # the generous arm's patience and ceiling, in multiples of the default's


@dataclass
class Case:
    """A table with its graph and exact answers."""

    name: str
    frame: pd.DataFrame
    edges: pd.DataFrame
    treatment: str
    outcome: str
    grid: np.ndarray  # [V] treatment values
    do_truth: np.ndarray  # [V] E[Y | do(X = v)], or E[Y | do(X = v)] - E[Y | do(X = grid[0])] if do_contrast
    cf_truth: np.ndarray  # [N] each row's Y under do(X := X + SHIFT)
    do_contrast: bool = False  # the generator gives contrasts only: score the curve relative to its first point


def _edges(adjacency: np.ndarray, names: list[str]) -> pd.DataFrame:
    src, dst = np.nonzero(adjacency)
    return pd.DataFrame({"source": [names[i] for i in src], "target": [names[j] for j in dst]})


def zoo_case(scm_name: str, n: int, seed: int) -> Case:
    """`n` observational rows of a zoo SCM and its exact answers."""
    scm = get_scm(scm_name)
    x = scm.sample(n, torch.Generator().manual_seed(seed))  # [N, D] float64
    grid = scm.treatment_grid(5)
    do_truth, _ = scm.do_mean(grid)
    cf = scm.counterfactual(x, {scm.treatment: {"shift": SHIFT}})[:, scm.outcome]
    return Case(
        scm_name,
        pd.DataFrame(x.numpy(), columns=scm.names),
        _edges(scm.adjacency, scm.names),
        scm.names[scm.treatment],
        scm.names[scm.outcome],
        grid.numpy(),
        do_truth.numpy(),
        cf.numpy(),
    )


# c confounds t and y (strongly, so t's overlap across c is weak); t -> m -> y; k is a child of t and y.
_SEMPLER_NAMES = ["c", "t", "m", "y", "k"]
_SEMPLER_EDGES = {("c", "t"): 1.5, ("c", "y"): 1.0, ("t", "m"): 0.8, ("m", "y"): 1.2, ("t", "y"): 0.5,
                  ("t", "k"): 0.7, ("y", "k"): -0.6}  # fmt: skip
_SEMPLER_VARIANCES = [1.0, 0.25, 0.5, 0.5, 0.3]


def sempler_case(n: int, seed: int, n_mc: int = 200_000) -> Case:
    """`n` rows of a 5-variable linear Gaussian SCM simulated by `sempler.LGANM`, its answers from sempler."""
    require_extra("the sempler benchmark case", "sempler")
    import sempler

    names = _SEMPLER_NAMES
    weights = np.zeros((5, 5))
    for (a, b), w in _SEMPLER_EDGES.items():
        weights[names.index(a), names.index(b)] = w
    scm = sempler.LGANM(weights, np.zeros(5), np.array(_SEMPLER_VARIANCES))
    x = scm.sample(n, random_state=seed)  # [N, 5]
    t, y = names.index("t"), names.index("y")
    grid = np.quantile(scm.sample(n_mc, random_state=seed + 1)[:, t], np.linspace(0.05, 0.95, 5))
    do_truth = np.array(
        [scm.sample(n_mc, do_interventions={t: (v, 0.0)}, random_state=seed + 2)[:, y].mean() for v in grid]
    )
    total = np.linalg.inv(np.eye(5) - weights)[t, y]  # x = Wᵀx + ε: total effect of t on y
    return Case(
        "sempler_lganm",
        pd.DataFrame(x, columns=names),
        _edges(weights, names),
        "t",
        "y",
        grid,
        do_truth,
        x[:, y] + total * SHIFT,
    )


def dowhy_case(n: int, seed: int) -> Case:
    """`n` rows of `dowhy.datasets.linear_dataset` (continuous treatment v0 confounded by W0, W1): its documented
    outcome is y = v0 · beta + W · c2 + noise with c2 and W's means unreported, so only contrasts are exact:
    E[y | do(v0 = v)] - E[y | do(v0 = v')] = beta · (v - v'), and each row's y + beta · shift. (Its returned
    `ate` is a difference of two noisy outcome draws, beta up to the outcome noise / √n: not exact.)"""
    require_extra("the dowhy benchmark case", "dowhy")
    import dowhy.datasets

    beta = 1.0
    np.random.seed(seed)  # linear_dataset draws from numpy's global generator
    data = dowhy.datasets.linear_dataset(
        beta=beta, num_common_causes=2, num_samples=n, treatment_is_binary=False,
        stddev_treatment_noise=0.5, stddev_outcome_noise=0.5,
    )  # fmt: skip
    frame = data["df"].astype(float)
    t, y, causes = data["treatment_name"][0], data["outcome_name"], list(data["common_causes_names"])
    edges = [(w, t) for w in causes] + [(w, y) for w in causes] + [(t, y)]
    grid = np.quantile(frame[t].to_numpy(), np.linspace(0.05, 0.95, 5))
    return Case(
        "dowhy_linear",
        frame[[*causes, t, y]],
        pd.DataFrame(edges, columns=["source", "target"]),
        t,
        y,
        grid,
        beta * (grid - grid[0]),
        frame[y].to_numpy() + beta * SHIFT,
        do_contrast=True,
    )


def _run_query(
    case: Case, tables: Path, run_dir: Path, overrides: list[str], graph: str | None = None, trace: int = 0
) -> tuple[dict, float, DictConfig]:
    """task=query on the case's table, with its true edge list (or `graph`, e.g. "discover"); its metrics,
    wall time and config. `trace` > 0: the point fit's answers are scored every `trace` epochs into
    run_dir/trace.jsonl (`AnswerTrace`)."""
    data, edges = tables / f"{case.name}.csv", tables / f"{case.name}_edges.csv"
    case.frame.to_csv(data, index=False)
    case.edges.to_csv(edges, index=False)
    interventional = ", ".join(f"v{i}: {{{case.treatment}: {float(v)!r}}}" for i, v in enumerate(case.grid))
    cfg = compose(
        [
            "task=query",
            "data=table",
            f"data.path={data}",
            f"data.graph_path={graph or edges}",
            f"task.interventional={{{interventional}}}",
            f"task.counterfactual={{up: {{{case.treatment}: {{shift: {SHIFT}}}}}}}",
            "~logger",
            "callbacks=none",
            f"paths.output_dir={run_dir}",
            *overrides,
        ],
        run_dir,
    )
    if trace:
        answers = tables / f"{case.name}_answers.json"
        truth = {"treatment": case.treatment, "outcome": case.outcome, "grid": case.grid.tolist(),
                 "do_truth": case.do_truth.tolist(), "cf_truth": case.cf_truth.tolist(),
                 "do_contrast": case.do_contrast}  # fmt: skip
        answers.write_text(json.dumps(truth))
        (run_dir / "trace.jsonl").unlink(missing_ok=True)
        callback = {"_target_": f"{__name__}.AnswerTrace", "table": str(data), "answers": str(answers),
                    "out": str(run_dir / "trace.jsonl"), "every": trace}  # fmt: skip
        with open_dict(cfg):
            cfg.callbacks = {"trace": callback}
    start = time.time()
    L.seed_everything(cfg.seed, workers=True)
    metrics = instantiate(cfg.task)(cfg)  # the task with its config's arguments, as run.py calls it
    return metrics, time.time() - start, cfg


def _rmse(curve: np.ndarray, cf: np.ndarray, do_truth: np.ndarray, cf_truth: np.ndarray, do_contrast: bool) -> dict:
    """RMSE of a do-curve [V] (levels; made contrasts here for a contrast-only case) and of the rows'
    counterfactual outcomes [N] against the exact answers (`Case` fields)."""
    curve = curve - curve[0] if do_contrast else curve
    return {
        "do_rmse": float(np.sqrt(np.mean((curve - do_truth) ** 2))),
        "cf_rmse": float(np.sqrt(np.mean((cf - cf_truth) ** 2))),
    }


class AnswerTrace(Callback):
    """Scores the fit's answers every `every` epochs (`scripts/bench_query.py --trace`): one JSON line per
    scored epoch in `out` with the learning rate, the held-out loss, the do and cf RMSE and the do-curve.
    It shows whether the answers still move while the held-out loss the stopping rule watches is flat.

    Args:
        table: the case's table (CSV, the columns the model was fitted on).
        answers: the case's exact answers (JSON written by `_run_query`).
        out: the JSON-lines file to append to.
        every: epochs between scores.
    """

    def __init__(self, table: str, answers: str, out: str, every: int = 10) -> None:
        frame = pd.read_csv(table)
        self.truth = json.loads(Path(answers).read_text())
        names = list(frame.columns)
        self.x = torch.tensor(frame.to_numpy(), dtype=torch.float32)  # [N, D]
        treatment = self.truth["treatment"]
        self.do = [Interventions.parse({treatment: v}, names) for v in self.truth["grid"]]
        self.cf = Interventions.parse({treatment: {"shift": SHIFT}}, names)
        self.outcome = names.index(self.truth["outcome"])
        self.out, self.every = Path(out), every
        self.out.parent.mkdir(parents=True, exist_ok=True)

    @torch.no_grad()
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every:
            return
        net, training = pl_module.net, pl_module.net.training
        net.eval()
        j = self.outcome
        curve = np.array([float(net.interventional(self.x, iv)[:, j].double().mean()) for iv in self.do])  # [V]
        cf = net.counterfactual(self.x, self.cf)[:, j].double().numpy()  # [N]
        net.train(training)
        truth = self.truth
        record = {"epoch": trainer.current_epoch, "lr": trainer.optimizers[0].param_groups[0]["lr"],
                  "val_loss": float(trainer.callback_metrics["val/loss"]),
                  **_rmse(curve, cf, np.array(truth["do_truth"]), np.array(truth["cf_truth"]), truth["do_contrast"]),
                  "curve": curve.tolist()}  # fmt: skip
        with self.out.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _score(case: Case, run_dir: Path, with_intervals: bool) -> dict[str, float]:
    do = pd.read_csv(run_dir / "interventional.csv")
    do = do[do.variable == case.outcome].set_index("query").loc[[f"v{i}" for i in range(len(case.grid))]]
    cf = pd.read_csv(run_dir / "counterfactual.csv").sort_values("row")
    y = f"{case.outcome}_cf"
    out = _rmse(do["mean"].to_numpy(), cf[y].to_numpy(), case.do_truth, case.cf_truth, case.do_contrast)
    out["do_outside_support"] = float(do.outside_support.mean())  # share of rows, mean over the grid
    out["cf_outside_support"] = float(cf.outside_support.mean())
    if with_intervals:
        # The intervals are for levels: a contrast-only case has no do coverage.
        covered = (do.ci_low <= case.do_truth) & (case.do_truth <= do.ci_high)
        out["do_coverage"] = float("nan") if case.do_contrast else float(np.mean(covered))
        out["cf_coverage"] = float(
            np.mean((cf[f"{y}_low"].to_numpy() <= case.cf_truth) & (case.cf_truth <= cf[f"{y}_high"].to_numpy()))
        )
    return out


def bench_case(case: Case, out: Path, trace: int = 0) -> dict:
    """Both arms on one case; returns a JSON-able record (`trace`: see `_run_query`)."""
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    metrics, seconds, cfg = _run_query(case, tables, out / "runs" / case.name / "default", [], trace=trace)
    record = {"case": case.name, "n": len(case.frame), "default_seconds": round(seconds, 1)}
    record |= {f"default_{k}": v for k, v in _score(case, out / "runs" / case.name / "default", True).items()}
    record |= {"converged": metrics["fit/converged"], "epochs": int(metrics["fit/epochs"]),
               "lr_decays": int(metrics["fit/lr_decays"])}  # fmt: skip
    patience = GENEROUS * cfg.task.convergence.patience
    overrides = [f"task.convergence.max_epochs={GENEROUS * record['epochs']}",
                 f"task.convergence.patience={patience}", "task.bootstrap=0"]  # fmt: skip
    metrics, seconds, _ = _run_query(case, tables, out / "runs" / case.name / "generous", overrides, trace=trace)
    record |= {"generous_seconds": round(seconds, 1), "generous_converged": metrics["fit/converged"],
               "generous_epochs": int(metrics["fit/epochs"])}  # fmt: skip
    record |= {f"generous_{k}": v for k, v in _score(case, out / "runs" / case.name / "generous", False).items()}
    for kind in ("do", "cf"):
        record[f"{kind}_ratio"] = record[f"default_{kind}_rmse"] / max(record[f"generous_{kind}_rmse"], 1e-12)
    return record


CASES: dict[str, Callable[[int, int], Case]] = {
    **{name: (lambda n, seed, name=name: zoo_case(name, n, seed)) for name in
       ("nonlin_simpson", "symprod_simpson", "mediator_nonlin", "chain3_nonlin", "large_backdoor_nonlin")},
    "sempler_lganm": sempler_case,
    "dowhy_linear": dowhy_case,
}  # fmt: skip


def summarise(records: list[dict]) -> str:
    """Markdown: one row per case over its seeds (mean RMSE of each arm, the ratio of the means and the range
    of the per-seed ratios, coverage pooled over the seeds' grid points and rows), then the pooled coverage."""
    cols = ["case", "seeds", "epochs", "default_seconds", "default_do_rmse", "generous_do_rmse", "do_ratio",
            "do_ratio_range", "default_cf_rmse", "generous_cf_rmse", "cf_ratio", "cf_ratio_range",
            "default_do_coverage", "default_cf_coverage", "default_do_outside_support"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows = []
    for case in dict.fromkeys(r["case"] for r in records):
        group = [r for r in records if r["case"] == case]
        row = {"case": case, "seeds": len(group)}
        for key in ("epochs", "default_seconds", "default_do_rmse", "generous_do_rmse", "default_cf_rmse",
                    "generous_cf_rmse", "default_do_coverage", "default_cf_coverage",
                    "default_do_outside_support"):  # fmt: skip
            row[key] = float(np.mean([r.get(key, np.nan) for r in group]))
        for kind in ("do", "cf"):
            row[f"{kind}_ratio"] = row[f"default_{kind}_rmse"] / max(row[f"generous_{kind}_rmse"], 1e-12)
            ratios = [r[f"{kind}_ratio"] for r in group]
            row[f"{kind}_ratio_range"] = f"{min(ratios):.2f}–{max(ratios):.2f}"
        rows.append(row)
        cells = (f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols)
        lines.append("| " + " | ".join(cells) + " |")
    do_cov = np.nanmean([r["default_do_coverage"] for r in rows])
    cf_cov = np.mean([r["default_cf_coverage"] for r in rows])
    lines += ["", f"Mean coverage at nominal 95 %: interventional {do_cov:.3f}, counterfactual {cf_cov:.3f}."]
    return "\n".join(lines)


def main(cases: list[str], n: int, seeds: list[int], out: Path, trace: int = 0) -> str:
    """Run every case at every seed (its table drawn with that seed, the fits seeded by the task's default),
    appending each record to out/results.jsonl as it finishes; a (case, n, seed) already there is not run
    again, so an interrupted run resumes and runs of a few cases at a time add up. After each, out/README.md
    tables every case over the seeds in the file. `trace` > 0 also writes each point fit's answers every
    `trace` epochs to out/runs/<case>/<arm>/trace.jsonl (the seed's runs overwrite the previous seed's)."""
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.jsonl"

    def stored() -> dict[tuple[str, int, int], dict]:
        lines = store.read_text().splitlines() if store.exists() else []
        return {(r["case"], r["n"], r.get("seed", 0)): r for r in map(json.loads, lines)}

    table = ""
    for seed in seeds:
        for name in cases:
            if (name, n, seed) not in stored():
                record = {"seed": seed, **bench_case(CASES[name](n, seed), out, trace)}
                with store.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            done = [r for (case, rows, _), r in stored().items() if rows == n and case in CASES]
            done.sort(key=lambda r: list(CASES).index(r["case"]))
            table = summarise(done)
            shown = sorted({r.get("seed", 0) for r in done})
            (out / "README.md").write_text(f"# bench_query (n={n}, seeds {shown})\n\n{table}\n")
    return table


def graph_comparison(cases: list[str], n: int, seed: int, out: Path) -> str:
    """Answer error with the true graph vs `data.graph_path=discover` (the PFN's graph, refined), both at the
    task's defaults without intervals; SHD of the graph used against the true one, and the dependences each
    graph leaves unexplained (`graph/unexplained_dependences`, the check task=query warns with). Writes
    out/graphs.md."""
    lines = ["| case | n | SHD | edges used (true) | unexplained dependences discovered (true) | do RMSE true graph | "
             "do RMSE discovered | cf RMSE true graph | cf RMSE discovered |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    for name in cases:
        case = CASES[name](n, seed)
        scores, unexplained = {}, {}
        for arm, graph in (("true", None), ("discovered", "discover")):
            run_dir = out / "runs" / case.name / f"graph_{arm}"
            metrics, _, _ = _run_query(case, tables, run_dir, ["task.bootstrap=0"], graph)
            scores[arm] = _score(case, run_dir, False)
            unexplained[arm] = int(metrics["graph/unexplained_dependences"])
        used = pd.read_csv(out / "runs" / case.name / "graph_discovered" / "graph_used.csv")
        true = {(s, t) for s, t in zip(case.edges.source, case.edges.target, strict=True)}
        found = {(s, t) for s, t in zip(used.source, used.target, strict=True)}
        # SHD: a reversed edge counts once; a missing or extra edge once each
        pairs = {frozenset(e) for e in true | found}
        shd = sum(1 for p in pairs if {e for e in true if frozenset(e) == p} != {e for e in found if frozenset(e) == p})
        lines.append(
            f"| {case.name} | {n} | {shd} | {len(found)} ({len(true)}) | {unexplained['discovered']} "
            f"({unexplained['true']}) | {scores['true']['do_rmse']:.3f} | "
            f"{scores['discovered']['do_rmse']:.3f} | {scores['true']['cf_rmse']:.3f} | "
            f"{scores['discovered']['cf_rmse']:.3f} |"
        )
    table = "\n".join(lines)
    (out / "graphs.md").write_text(f"# task=query: true vs discovered graph (n={n}, seed={seed})\n\n{table}\n")
    return table
