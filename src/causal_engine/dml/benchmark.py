"""The simulated JEPA-DML benchmark: replicates of five estimators on the same data and folds, their summary
with Monte Carlo errors and target verdicts, paired comparisons of two benchmarks, and diagnostics that reuse a
benchmark's saved per-fold JEPAs instead of refitting them. `scripts/bench_dml.py` and `scripts/diag_jepa.py`
are the command lines over these functions.

Estimators per replicate (same data, same fold plan where it applies):
  jepa_dml      cross-fitted DML, a fresh JEPA + TarNet/propensity nuisances per fold (`experiment=jepa_dml`)
  naive         difference in means with its two-sample SE
  pixel_dml     the same nuisances on raw flattened pixels (no JEPA)
  doubleml_rf   DoubleMLIRM with random forests on raw pixels
  oracle_dml    the same nuisances on the true confounders U
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from causal_engine.dml.diagnostics import (
    E_BINS,
    aipw_remainder,
    decompose,
    decompose_run,
    embed_readouts,
    mean_se,
    ridge_r2,
    with_variant,
)
from causal_engine.errors import require_extra
from causal_engine.train import compose

ESTIMATORS = ("jepa_dml", "naive", "pixel_dml", "doubleml_rf", "oracle_dml")


# What `--jepa-only` skips: estimators that do not depend on the JEPA or its settings (paired re-runs reuse theirs).
BASELINES = ("pixel_dml", "doubleml_rf", "oracle_dml")


# A run's settings without its logging: no logger, no progress bars (fits run side by side, or by the hundred).
QUIET = ["~logger", "~callbacks.progress_bar", "~callbacks.lr_monitor", "+trainer.enable_progress_bar=false"]


def config_fingerprint(overrides: list[str]) -> str:
    """What a replicate depends on besides its seed: the composed data, model and DML settings."""
    from causal_engine.dml.store import fold_fingerprint

    return fold_fingerprint(compose(["experiment=jepa_dml", "seed=0", *overrides], Path("/nonexistent")))


def load_replicates(out: Path) -> list[dict]:
    """The replicate records of a `--out OUT` benchmark (`OUT/replicates.jsonl`, one JSON object a line)."""
    return [json.loads(line) for line in (out / "replicates.jsonl").read_text().splitlines()]


def _row(result) -> dict[str, float]:
    return {
        "estimate": result.estimate,
        "se": result.se,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "clipped_share": result.clipped_share,
    }


def replicate(
    seed: int, overrides: list[str], workdir: Path, rf_trees: int, baselines: bool = True
) -> dict[str, dict[str, float]]:
    """All five estimators on one simulated data set drawn with `seed` (JEPA-DML and naive only without
    `baselines`)."""
    from dataclasses import replace

    require_extra("the DoubleML baseline", "doubleml")
    from doubleml import DoubleMLData, DoubleMLIRM
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from causal_engine.dml.crossfit import run_crossfit
    from causal_engine.train import with_output_dir

    cfg = compose(
        # The run's own settings (the best-validation checkpoint selects each nuisance) without its logging:
        # no logger, no progress bars (replicates run side by side). The overlap guard stops a user's run;
        # here every estimator must report, so it is off (clipped shares are recorded instead).
        [
            "experiment=jepa_dml",
            f"seed={seed}",
            *QUIET,
            "dml.max_clipped_share=1.0",
            *overrides,
        ],
        workdir / f"seed{seed}",
    )
    rows: dict[str, dict[str, float]] = {}
    start = time.time()
    out = run_crossfit(cfg)
    rows["jepa_dml"] = {
        **_row(out.result),
        "seconds": time.time() - start,
        # None when no fold trains a JEPA (dml.pretrain=once: one label-free JEPA before the folds)
        "probe_r2": _mean_or_none([r.probe_r2 for r in out.records]),
    }
    z = 1.959963984540054
    rows["naive"] = {
        "estimate": out.naive,
        "se": out.naive_se,
        "ci_low": out.naive - z * out.naive_se,
        "ci_high": out.naive + z * out.naive_se,
    }
    if not baselines:
        return rows
    sample = out.sample
    pixels = sample.features.reshape(len(sample), -1)  # [N, C·T·H·W]
    # The other two cross-fitted estimators write their checkpoints beside JEPA-DML's, not into its folders.
    own = {name: with_output_dir(cfg, Path(cfg.paths.output_dir) / name) for name in ("pixel_dml", "oracle_dml")}
    rows["pixel_dml"] = _row(run_crossfit(own["pixel_dml"], replace(sample, features=pixels, confounders=None)).result)
    u = torch.from_numpy(sample.confounders).float()
    rows["oracle_dml"] = _row(run_crossfit(own["oracle_dml"], replace(sample, features=u, confounders=None)).result)
    data = DoubleMLData.from_arrays(pixels.numpy().astype(np.float64), sample.outcome, sample.treatment)
    irm = DoubleMLIRM(
        data,
        ml_g=RandomForestRegressor(rf_trees, max_features="sqrt", min_samples_leaf=5, random_state=seed, n_jobs=1),
        ml_m=RandomForestClassifier(rf_trees, max_features="sqrt", min_samples_leaf=5, random_state=seed, n_jobs=1),
        n_folds=cfg.dml.k_folds,
        score="ATE",
        draw_sample_splitting=False,
    )
    irm.set_sample_splitting([(f.train, f.test) for f in out.plan[0]])
    irm.fit()
    low, high = irm.confint(level=0.95).to_numpy()[0]
    rows["doubleml_rf"] = {
        "estimate": float(irm.coef[0]),
        "se": float(irm.se[0]),
        "ci_low": float(low),
        "ci_high": float(high),
    }
    return rows


def summarise(records: list[dict], truth: float = 1.0) -> tuple[str, dict[str, dict[str, float]]]:
    from causal_engine.metrics import interval_summary

    stats = {}
    for name in _present(records):
        vals = [r["estimators"][name] for r in records]
        s = interval_summary(
            np.array([v["estimate"] for v in vals]),
            np.array([v["ci_low"] for v in vals]),
            np.array([v["ci_high"] for v in vals]),
            truth,
        )
        s["mean_se"] = float(np.mean([v["se"] for v in vals]))
        s["clipped"] = float(np.mean([v.get("clipped_share", 0.0) for v in vals]))
        # Monte Carlo error of the benchmark itself: the bias's SE over replicates, the coverage's binomial SE.
        s["bias_mcse"] = float(np.std([v["estimate"] for v in vals], ddof=1) / np.sqrt(len(vals)))
        s["coverage_mcse"] = float(np.sqrt(s["coverage"] * (1 - s["coverage"]) / len(vals)))
        stats[name] = s
    lines = [
        f"Replicates: {len(records)} (true ATE {truth}); 95 % CIs; ± is the Monte Carlo SE of the benchmark.",
        "",
        "| estimator | bias | RMSE | coverage | mean CI width | mean SE | clipped share |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in stats.items():
        lines.append(
            f"| {name} | {s['bias']:+.3f} ± {s['bias_mcse']:.3f} | {s['rmse']:.3f} | {s['coverage']:.2f} ± "
            f"{s['coverage_mcse']:.2f} | {s['ci_width']:.3f} | {s['mean_se']:.3f} | {s['clipped']:.3f} |"
        )
    jepa = stats["jepa_dml"]
    targets = [
        ("coverage in [0.90, 0.99]", f"{jepa['coverage']:.2f}", 0.90 <= jepa["coverage"] <= 0.99),
        ("abs(bias) < mean SE / 3", f"{abs(jepa['bias']):.3f} vs {jepa['mean_se'] / 3:.3f}",
         abs(jepa["bias"]) < jepa["mean_se"] / 3),
    ]  # fmt: skip
    if "oracle_dml" in stats:
        oracle = stats["oracle_dml"]
        targets.append(("RMSE ≤ 1.5 × oracle", f"{jepa['rmse']:.3f} vs {1.5 * oracle['rmse']:.3f}",
                        jepa["rmse"] <= 1.5 * oracle["rmse"]))  # fmt: skip
    else:
        targets.append(("RMSE ≤ 1.5 × oracle", "oracle_dml not run", None))
    if {"pixel_dml", "doubleml_rf"} <= stats.keys():
        pixel, rf = stats["pixel_dml"]["rmse"], stats["doubleml_rf"]["rmse"]
        targets.append(("RMSE < pixel_dml and doubleml_rf", f"{jepa['rmse']:.3f} vs {pixel:.3f}, {rf:.3f}",
                        jepa["rmse"] < min(pixel, rf)))  # fmt: skip
    else:
        targets.append(("RMSE < pixel_dml and doubleml_rf", "baselines not run", None))
    verdict = {True: "yes", False: "no", None: "n/a"}
    lines += ["", "| JEPA-DML target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict[ok]} |" for name, value, ok in targets]
    secs = [r["estimators"]["jepa_dml"]["seconds"] for r in records]
    probe = _mean_or_none([r["estimators"]["jepa_dml"].get("probe_r2") for r in records])
    probe_text = "" if probe is None else f"; held-out linear-probe R² of U from the JEPA embeddings: {probe:.2f}"
    lines += ["", f"JEPA-DML wall time per run: mean {np.mean(secs):.0f} s (max {np.max(secs):.0f} s){probe_text}."]
    return "\n".join(lines), stats


def _mean_or_none(values: list[float | None]) -> float | None:
    """The mean of the values that exist (a run without a per-fold JEPA has no probe), else None."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _present(records: list[dict]) -> list[str]:
    """The estimators every replicate in `records` ran, in table order (`--jepa-only` runs skip the baselines)."""
    return [name for name in ESTIMATORS if all(name in r["estimators"] for r in records)]


def compare(first: list[dict], second: list[dict], truth: float = 1.0) -> str:
    """Per estimator, the second benchmark's estimate minus the first's over the seeds both ran (paired: the same
    seed draws the same data and fold plan), as a Markdown table with the difference's SE over replicates."""
    a, b = ({r["seed"]: r["estimators"] for r in recs} for recs in (first, second))
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        raise SystemExit(f"the benchmarks share {len(seeds)} seed(s); pairing needs at least 2")
    lines = [f"{len(seeds)} paired replicates (seeds {seeds[0]}–{seeds[-1]}); second minus first", "",
             "| estimator | mean difference | SE | lower in second | second's mean abs error − first's |",
             "|---|---|---|---|---|"]  # fmt: skip
    both = set(_present(second))
    for name in [n for n in _present(first) if n in both]:
        x = np.array([a[s][name]["estimate"] for s in seeds])
        y = np.array([b[s][name]["estimate"] for s in seeds])
        d, gain = y - x, np.abs(y - truth).mean() - np.abs(x - truth).mean()
        lines.append(f"| {name} | {d.mean():+.4f} | {d.std(ddof=1) / np.sqrt(len(d)):.4f} | "
                     f"{int((d < 0).sum())}/{len(d)} | {gain:+.4f} |")  # fmt: skip
    return "\n".join(lines)


def figure(records: list[dict], path: Path, truth: float = 1.0) -> None:
    from causal_engine.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = _present(records)
    for i, name in enumerate(names):
        est = [r["estimators"][name]["estimate"] for r in records]
        ax.scatter(est, np.full(len(est), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(est)), s=12)
    ax.axvline(truth, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("ATE estimate per replicate (truth dashed)")
    save_figure(fig, path)


def worker_init(threads: int) -> None:
    """Each process: `threads` torch threads, no per-fit log lines."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)
    logging.disable(logging.WARNING)


def pool_worker_init(threads: int) -> None:
    """A pool worker: `worker_init`, and exit as soon as the parent is gone. A spawned worker otherwise outlives
    a parent killed by a signal it cannot catch (SIGKILL, or SIGTERM from `kill`/`pkill`) and goes on computing
    a replicate nobody will record, slowing whatever runs next."""
    worker_init(threads)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # a dead parent's children are re-parented
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def decompose_bench(out: Path) -> str:
    """The mean over a `scripts/bench_dml.py --out OUT` benchmark's replicates of JEPA-DML's error and its parts
    (from the replicates' saved folds), as a Markdown table."""
    records = load_replicates(out)
    parts, shares = [], []
    for r in sorted(records, key=lambda r: r["seed"]):
        cfg = compose(["experiment=jepa_dml", f"seed={r['seed']}", *r["overrides"]], out / "runs" / f"seed{r['seed']}")
        p = decompose_run(out / "runs" / f"seed{r['seed']}", cfg)
        error = p["estimate"] - p["truth"]
        parts.append([error, p["oracle_noise"], p["remainder"], error - p["oracle_noise"] - p["remainder"]])
        shares.append(p["remainder_by_e"])
    a = np.array(parts)  # [replicates, 4]
    names = ("JEPA-DML error", "sampling noise (AIPW with the true nuisances)", "AIPW remainder",
             "the rest (noise × nuisance-error cross terms)")  # fmt: skip
    lines = [f"{len(a)} replicates", "", "| part | mean | SE | replicates > 0 |", "|---|---|---|---|"]
    for i, name in enumerate(names):
        col = a[:, i]
        lines.append(f"| {name} | {col.mean():+.3f} | {col.std(ddof=1) / np.sqrt(len(col)):.3f} | "
                     f"{int((col > 0).sum())}/{len(col)} |")  # fmt: skip
    b = np.array(shares)  # [replicates, bins]
    lines += ["", "| rows by true propensity e | share of the remainder | SE |", "|---|---|---|"]
    for k, col in enumerate(b.T):
        se = col.std(ddof=1) / np.sqrt(len(col)) if len(col) > 1 else float("nan")
        lines.append(f"| {E_BINS[k]:.2f} ≤ e < {E_BINS[k + 1]:.2f} | {col.mean():+.4f} | {se:.4f} |")
    return "\n".join(lines)


def bench_jepas(out: Path, replicates: int, workdir: Path) -> Iterator[tuple[int, Any, Any, Iterator]]:
    """The first `replicates` replicates (by seed) of a `bench_dml.py --out OUT` benchmark: per replicate its
    seed, its composed config (outputs under `workdir`), the simulated draw with its truth, and a lazy iterator
    over its fold plan of (fold, the JEPA the benchmark fitted and saved for that fold). Nothing is refit."""
    from hydra.utils import instantiate

    from causal_engine.dml.folds import stratified_folds
    from causal_engine.dml.simulate import simulate_videos

    def folds(seed: int, cfg, truth) -> Iterator:
        for fold in stratified_folds(truth.treatment, cfg.dml.k_folds, n_rep=1, seed=cfg.dml.split_seed)[0]:
            jepa = instantiate(cfg.model, in_channels=int(truth.videos.shape[1]))
            path = out / "runs" / f"seed{seed}" / f"rep0/fold{fold.k}/jepa/checkpoints/last.ckpt"
            jepa.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
            yield fold, jepa

    for r in sorted(load_replicates(out), key=lambda r: r["seed"])[:replicates]:
        cfg = compose(["experiment=jepa_dml", f"seed={r['seed']}", *QUIET, *r["overrides"]], workdir)
        truth = simulate_videos(**instantiate(cfg.data).sim_kwargs)
        yield r["seed"], cfg, truth, folds(r["seed"], cfg, truth)


def compare_nuisances(out: Path, replicates: int, variants: Sequence[str], workdir: Path) -> str:
    """Nuisance variants refit on the embeddings of a `bench_dml.py --out OUT` benchmark's own saved per-fold
    JEPAs (nothing but the outcome and propensity networks is refit): per variant, over the first `replicates`
    replicates, JEPA-DML's bias, coverage and mean SE, the AIPW remainder and the held-out losses, with the
    estimate and remainder paired by replicate against the first variant. The networks are fit without the
    JEPA fit before them, so even the configured variant ('') differs from the benchmark's own nuisances by
    their initialisation: compare the variants with each other, not with the benchmark."""
    from causal_engine.dml.data import CausalSample
    from causal_engine.dml.fold import fit_fold, fold_seed

    variants = list(variants)
    rows: dict[str, list[list[float]]] = {v: [] for v in variants}
    for seed, cfg, truth, fold_jepas in bench_jepas(out, replicates, workdir):
        n = len(truth.outcome)
        oof = {v: {key: np.full(n, np.nan) for key in ("g0", "g1", "m")} for v in variants}
        losses = {v: [] for v in variants}
        for fold, jepa in fold_jepas:
            sample = CausalSample(torch.from_numpy(jepa.embed(truth.videos)).float(), truth.treatment, truth.outcome)
            for i, variant in enumerate(variants):
                vcfg = with_variant(cfg, variant, workdir / f"seed{seed}" / f"variant{i}")
                preds, record = fit_fold(vcfg, sample, fold, fold_seed(cfg.seed, fold, cfg.dml.k_folds))
                for key in oof[variant]:
                    oof[variant][key][fold.test] = preds[key]
                losses[variant].append([record.outcome_mse, record.propensity_bce])
        z = NormalDist().inv_cdf(0.5 + cfg.dml.level / 2)
        for variant in variants:
            p = decompose(cfg, truth, oof[variant])
            covered = abs(p["estimate"] - p["truth"]) <= z * p["se"]
            rows[variant].append([p["estimate"] - p["truth"], p["remainder"], p["se"], covered,
                                  *np.mean(losses[variant], 0)])  # fmt: skip
        print(f"seed {seed} done", flush=True)
    base = np.array(rows[variants[0]])  # [replicates, 6]
    lines = [f"{len(base)} replicates of {out}; paired against {variants[0] or '(as configured)'}", "",
             "| nuisance variant | bias (SE) | coverage | mean SE | remainder (SE) | outcome MSE | propensity BCE "
             "| Δ estimate (SE) | Δ remainder (SE) |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for variant, vals in rows.items():
        a = np.array(vals)
        lines.append(f"| {variant or '(as configured)'} | {mean_se(a[:, 0])} | {a[:, 3].mean():.2f} | "
                     f"{a[:, 2].mean():.4f} | {mean_se(a[:, 1])} | {a[:, 4].mean():.4f} | {a[:, 5].mean():.4f} | "
                     f"{mean_se(a[:, 0] - base[:, 0])} | {mean_se(a[:, 1] - base[:, 1])} |")  # fmt: skip
    return "\n".join(lines)


def compare_readouts(
    out: Path, replicates: int, pools: Sequence[str] | None = None, workdir: Path = Path("/tmp/diag_jepa/readouts")
) -> str:
    """Each pooling of the JEPAs a `bench_dml.py --out OUT` benchmark fitted (its saved per-fold checkpoints, so
    no JEPA is refit): held-out ridge R² of U, f and g, and the AIPW remainder of the configured networks refit
    on that pooling, over the folds of the first `replicates` replicates. Two references bound what a readout can
    do: the networks on the true U, and on the ridge projection of the configured pooling (`model.pool`) onto U
    (six numbers that carry what a linear readout finds; it uses U, so it is a diagnostic, not an estimator). If
    the networks leave more remainder on the embedding than on its projection, they fail to use what the
    embedding holds. `pools` limits the poolings refit (default: all; the configured one is always included, as
    the base of the paired differences). The networks are refit here without the JEPA fit before them, so their
    initialisation, and the remainder of the configured pooling, differ slightly from the benchmark's own;
    compare the rows with each other (paired by fold), not with the benchmark. The refits write under
    `workdir`."""
    from sklearn.linear_model import RidgeCV

    from causal_engine.dml.data import CausalSample
    from causal_engine.dml.fold import fit_fold, fold_seed
    from causal_engine.dml.simulate import CONFOUNDERS, baseline_outcome, treatment_logit
    from causal_engine.jepa.module import POOLS
    from causal_engine.train import with_output_dir

    rows: dict[str, list[list[float]]] = {}
    n_replicates = 0
    for seed, cfg, truth, fold_jepas in bench_jepas(out, replicates, workdir):
        n_replicates += 1
        u = truth.confounders
        targets = np.c_[u, treatment_logit(u), baseline_outcome(u)]  # [N, 8]
        true0, true1 = baseline_outcome(u), baseline_outcome(u) + truth.tau
        for fold, jepa in fold_jepas:
            tr, te = fold.train, fold.test
            chosen = [cfg.model.pool, *(p for p in (pools or POOLS) if p != cfg.model.pool)]
            features = {f"target/{pool}": z for pool, z in embed_readouts(jepa, truth.videos, "target", chosen).items()}
            zs = features[f"target/{cfg.model.pool}"]
            zs = (zs - zs[tr].mean(0)) / (zs[tr].std(0) + 1e-8)
            features[f"U projected from {cfg.model.pool}"] = (
                RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(zs[tr], u[tr]).predict(zs)
            )
            features["true U"] = u
            for name, z in features.items():
                zz = (z - z[tr].mean(0)) / (z[tr].std(0) + 1e-8)
                r2 = ridge_r2(zz[tr], targets[tr], zz[te], targets[te])
                sample = CausalSample(torch.from_numpy(z).float(), truth.treatment, truth.outcome)
                fcfg = with_output_dir(cfg, workdir / f"seed{seed}" / name.replace("/", "-"))
                preds, _ = fit_fold(fcfg, sample, fold, fold_seed(cfg.seed, fold, cfg.dml.k_folds))
                m = np.clip(preds["m"], cfg.dml.trim, 1 - cfg.dml.trim)
                rem = aipw_remainder(preds["g0"], preds["g1"], m, truth.propensity[te], true0[te], true1[te]).mean()
                rows.setdefault(name, []).append([*r2, rem, z.shape[1]])
            print(f"seed {seed} fold {fold.k} done", flush=True)
    base_name = f"target/{cfg.model.pool}"
    base = np.array(rows[base_name])
    head = " | ".join((*CONFOUNDERS, "f", "g"))
    lines = [f"{len(base)} folds of {n_replicates} replicates; R²: held-out ridge probes",
             "", f"| readout | dim | {head} | remainder | vs {base_name} (SE) |",
             "|---|---|" + "---|" * (len(CONFOUNDERS) + 4)]  # fmt: skip
    for name, vals in rows.items():
        a = np.array(vals)  # [folds, 8 R² + remainder + dim]
        diff = a[:, -2] - base[:, -2]
        r2 = " | ".join(f"{x:.3f}" for x in a[:, :-2].mean(0))
        lines.append(f"| {name} | {int(a[0, -1])} | {r2} | {a[:, -2].mean():+.4f} | {mean_se(diff)} |")
    return "\n".join(lines)
