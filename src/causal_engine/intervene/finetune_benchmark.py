"""Does causal fine-tuning reduce the interventional data a plain network needs? N* per arm, SCM and seed.

For one zoo SCM and seed, with `n_obs` observational rows and budgets of n do(X = v) rows (v drawn from X's
marginal, a randomised experiment), every arm is the config the CLI runs (`experiment=causal_finetune`,
or `model=structural_mlp` on the same rows), without logger or progress bar:

- `<net>/pretrained`: the network fitted on the observational rows only (it is fine-tuning's n = 0 point);
- `<net>/finetuned`: that network fine-tuned on the n do rows (`task=finetune` from the pretrained weights);
- `<net>/scratch`: the same network trained from its initialisation on the same n do rows only (it is
  standardised with the observational rows' mean and SD, as the other arms are);
- `structural`: the StructuralMLP on the observational rows plus the same n do rows (n = 0: observational).

`<net>` is `mlp`, the seed's baseline (every other variable as input, so it reads descendants of the
treatment and stays biased at any n), or `mlp_nondesc` (the treatment and its non-descendants only).
The score is `test/do_rmse`: the model's E[Y | do(X = v)] over the 9 quantiles 5–95 % of X against the test
rows' exact do-response (0 for a perfect model). N* = the smallest budget n whose RMSE reaches the target,
per seed. "Fine-tuning reduces data requirements" holds for a network on an SCM when the fine-tuned arm's
median N* is at most half the scratch arm's and their seed intervals are disjoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch

from causal_engine.intervene.finetune import finetune, fit_and_test
from causal_engine.intervene.zoo import get_scm
from causal_engine.train import compose

NETS = {"mlp": "all", "mlp_nondesc": "nondescendants"}
ARMS = [*(f"{net}/{stage}" for net in NETS for stage in ("pretrained", "finetuned", "scratch")), "structural"]
# The CLI's trainer without logger, progress bar or checkpoints: every arm is scored with its final weights, as in
# scripts/bench_intervene.py. The arms that fit do rows only (fine-tuned, scratch) hold out the same share of
# them and stop on their loss (`finetune.DO_MONITOR`); the structural arm stops on the observational val/loss.
LEAN = [
    "~logger",
    "callbacks.lr_monitor=null",
    "callbacks.progress_bar=null",
    "callbacks.model_checkpoint=null",
    "callbacks.last_checkpoint=null",
]


def _compose(scm: str, seed: int, run_dir: Path, n_test: int, extra: Sequence[str] = ()):
    overrides = ["experiment=causal_finetune", f"data.scm={scm}", f"seed={seed}", f"data.n_test={n_test}", *LEAN]
    return compose([*overrides, *extra], run_dir)


def _record(arm: str, scm: str, seed: int, n: int, metrics: dict[str, float], seconds: float, prefix: str = "") -> dict:
    return {
        "arm": arm,
        "scm": scm,
        "seed": seed,
        "n": n,
        "do_rmse": metrics[f"{prefix}test/do_rmse"],
        "do_rmse_pop": metrics[f"{prefix}test/do_rmse_pop"],
        "seconds": round(seconds, 2),
    }


def run_seed(scm: str, seed: int, budgets: Sequence[int], n_obs: int, n_test: int, out: Path) -> list[dict]:
    """Every arm on one (SCM, seed) at every budget n in `budgets` (> 0); returns JSON-able records."""
    records = []
    run_dir = out / "runs" / scm / f"seed{seed}"
    for net, features in NETS.items():
        base = [f"model.net.features={features}"]
        weights = run_dir / net / "pretrain" / "pretrained.pt"
        for n in budgets:
            extra = base if n == budgets[0] else [*base, f"model.net.weights={weights}"]
            cfg = _compose(scm, seed, run_dir / net, n_test, extra)
            L.seed_everything(seed, workers=True, verbose=False)
            start = time.time()
            metrics = finetune(cfg, pretrain_rows=n_obs, interventional_rows=n, val_fraction=cfg.task.val_fraction)
            if n == budgets[0]:  # this call pretrained first: its pretrain/ metrics are the n = 0 point
                records.append(_record(f"{net}/pretrained", scm, seed, 0, metrics, 0.0, "pretrain/"))
            records.append(_record(f"{net}/finetuned", scm, seed, n, metrics, time.time() - start))
            cfg = _compose(scm, seed, run_dir / f"{net}_scratch_{n}", n_test, base)
            L.seed_everything(seed, workers=True, verbose=False)
            start = time.time()
            _, metrics, _ = fit_and_test(cfg, cfg.model, n_obs, n, lambda do: do, "scratch", cfg.task.val_fraction)
            records.append(_record(f"{net}/scratch", scm, seed, n, metrics, time.time() - start))
    for n in [0, *budgets]:
        cfg = _compose(scm, seed, run_dir / f"structural_{n}", n_test, ["model=structural_mlp"])
        L.seed_everything(seed, workers=True, verbose=False)
        start = time.time()
        # n = 0: the observational rows only (one do row is drawn after them and left out)
        keep = (lambda do: ~do) if n == 0 else torch.ones_like
        _, metrics, _ = fit_and_test(cfg, cfg.model, n_obs, max(n, 1), keep, "structural")
        records.append(_record("structural", scm, seed, n, metrics, time.time() - start))
    return records


def n_star(rmse_by_n: dict[int, float], target: float) -> float:
    """The smallest budget n whose RMSE is <= target (inf when none reaches it)."""
    return next((float(n) for n in sorted(rmse_by_n) if rmse_by_n[n] <= target), math.inf)


def targets(scm: str) -> dict[str, float]:
    """The two targets of `scripts/bench_intervene.py`: 10 % of the SD of the true do-response over the grid
    of 9 quantiles (0.25 when that SD is 0), and the absolute 0.25."""
    zoo = get_scm(scm)
    truth, _ = zoo.do_mean(zoo.treatment_grid(9))
    sd = float(truth.std())
    return {"10% SD": 0.1 * sd if sd > 0 else 0.25, "abs 0.25": 0.25}


def _show(values: Sequence[float]) -> str:
    def fmt(v: float) -> str:
        return "∞" if math.isinf(v) else f"{v:g}"

    return f"{fmt(float(np.median(values)))} [{fmt(min(values))}, {fmt(max(values))}]"


def _stars(rows: list[dict], arm: str, target: float, seeds: Sequence[int]) -> list[float]:
    """N* per seed of one arm; fine-tuning's n = 0 point is the pretrained network."""
    stage_zero = arm.replace("finetuned", "pretrained")
    out = []
    for seed in seeds:
        by_n = {r["n"]: r["do_rmse"] for r in rows if r["seed"] == seed and r["arm"] in (arm, stage_zero)}
        out.append(n_star(by_n, target))
    return out


def verdict(finetuned: Sequence[float], scratch: Sequence[float]) -> str:
    """'holds' when fine-tuning's median N* <= half of scratch's and every seed's N* is below scratch's best;
    'fails' otherwise; '†' marks a scratch arm that never reached the target within the budgets."""
    holds = np.median(finetuned) <= np.median(scratch) / 2 and max(finetuned) < min(scratch)
    censored = " †" if holds and math.isinf(float(np.median(scratch))) else ""
    return f"{'holds' if holds else 'fails'}{censored}"


def summarise(records: list[dict], budgets: Sequence[int], seeds: Sequence[int]) -> str:
    """Markdown: per SCM the RMSE by arm and budget, N* per arm and target, and the verdict per network."""
    ns = [0, *budgets]
    lines = ["# bench_finetune", ""]
    verdicts = []
    for scm in dict.fromkeys(r["scm"] for r in records):
        rows = [r for r in records if r["scm"] == scm]
        goals = targets(scm)
        lines += [f"## {scm}", "", "| arm | " + " | ".join(f"n={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for arm in ARMS:
            cells = []
            for n in ns:
                vals = [r["do_rmse"] for r in rows if r["arm"] == arm and r["n"] == n]
                cells.append(f"{np.mean(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]" if vals else "–")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines += ["", "do RMSE, mean [min, max] over seeds; n = interventional rows", ""]
        lines += ["| arm | " + " | ".join(f"N* ({k} = {v:.3f})" for k, v in goals.items()) + " |", "|---|---|---|"]
        stars = {arm: {k: _stars(rows, arm, v, seeds) for k, v in goals.items()} for arm in ARMS if arm != "structural"}
        stars["structural"] = {k: _stars(rows, "structural", v, seeds) for k, v in goals.items()}
        for arm in (a for a in ARMS if not a.endswith("pretrained")):
            lines.append(f"| {arm} | " + " | ".join(_show(stars[arm][k]) for k in goals) + " |")
        lines += ["", "N*, median [min, max] over seeds (∞: not reached within the budgets)", ""]
        for net in NETS:
            cells = [verdict(stars[f"{net}/finetuned"][k], stars[f"{net}/scratch"][k]) for k in goals]
            versus = [
                "≤" if np.median(stars[f"{net}/finetuned"][k]) <= np.median(stars["structural"][k]) else ">"
                for k in goals
            ]
            verdicts.append(
                f"| {scm} | {net} | "
                + " | ".join(f"{c} ({v} structural)" for c, v in zip(cells, versus, strict=True))
                + " |"
            )
    lines += [
        "## Fine-tuned vs scratch: N*(finetuned) ≤ N*(scratch)/2, seed intervals disjoint",
        "",
        "| SCM | network | " + " | ".join(targets(records[0]["scm"])) + " |",
        "|---|---|---|---|",
        *verdicts,
        "",
        "(≤/> structural: the fine-tuned median N* against the structural model's.) "
        "† scratch never reached the target within the budgets (N* right-censored).",
        "",
    ]
    return "\n".join(lines)


def main(scms: Sequence[str], seeds: int, budgets: Sequence[int], n_obs: int, n_test: int, out: Path,
         stop_after: float = math.inf) -> str:  # fmt: skip
    """Run every (SCM, seed) not yet in out/results.jsonl (appended as each finishes, so a rerun resumes),
    write out/README.md with the tables and return them. No new (SCM, seed) starts after `stop_after` min."""
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.jsonl"
    records = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    done = {(r["scm"], r["seed"]) for r in records}
    started = time.time()
    for seed in range(seeds):  # seed-major, so a stopped run has every SCM at equal depth
        for scm in scms:
            if (scm, seed) in done or time.time() - started > 60 * stop_after:
                continue
            found = run_seed(scm, seed, budgets, n_obs, n_test, out)
            with store.open("a") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in found)
            records += found
    wanted = [r for r in records if r["scm"] in scms and r["seed"] < seeds]
    table = summarise(wanted, budgets, list(range(seeds)))
    (out / "README.md").write_text(table + "\n")
    return table
