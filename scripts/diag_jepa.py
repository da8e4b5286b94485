"""Diagnose one cross-fitting fold of JEPA-DML on simulated videos: is the bias in the representation or the nuisances?

A full run fits K JEPAs; this fits one (fold `--fold` of the default plan, the same rows, inner split and
seed as `task=crossfit`) and reports, on that fold's held-out rows:

  probes      held-out R² of ridge regressions (penalty by leave-one-out CV) from the embeddings to each true
              confounder U, to the treatment logit f(U) and to the baseline outcome g(U);
  nuisances   held-out outcome MSE and propensity BCE of the configured networks (`dml.nuisance.*`, trained
              exactly as in the run) next to ridge / logistic regression on the same embeddings, and the
              references: ridge on the true U, the true g(U) (noise floor) and the true propensity;
  remainder   the conditional bias of the AIPW estimate given the fitted nuisances,
                  mean over held-out rows of (ê - e) · [(ĝ1 - g1) / ê + (ĝ0 - g0) / (1 - ê)],
              computable only in simulation (e, g known) and free of outcome noise, so one fold already
              estimates the bias of a full run (which averages it over folds; folds differ by a few
              hundredths), with its SE over rows.

Every extra argument is a Hydra override of `experiment=jepa_dml`, so each candidate change is one command:

    .venv/bin/python scripts/diag_jepa.py seed=1 model.tubelet=[2,2,2]
    .venv/bin/python scripts/diag_jepa.py --fold 2 seed=2 dml.nuisance.outcome.dropout=0.3

Prints a table and writes `diag.json` under `--out` (default /tmp/diag_jepa/<overrides>).

`--run DIR` instead reads a finished simulated run (`causal-engine experiment=jepa_dml hydra.run.dir=DIR`, its saved
out-of-fold predictions `DIR/rep0/fold*/oof.npz`) and splits its error, estimate - truth, into the remainder over
all rows (the bias the nuisances leave) and the rest (the sampling noise the CI accounts for); fits nothing:

    .venv/bin/python scripts/diag_jepa.py --run outputs/runs/<date>/<time>

`--bench OUT` does the same for every replicate of a `scripts/bench_dml.py --out OUT` benchmark and prints the
mean of each part (the sampling noise further split into what the true nuisances would see, which every
estimator on the same data shares, and the rest), then the remainder's share by bin of the true propensity:

    .venv/bin/python scripts/diag_jepa.py --bench outputs/bench_dml

`--nuisances OUT` refits only the outcome and propensity networks, on the embeddings of that benchmark's own
saved per-fold JEPAs, once as configured and once per `--variant`, over its first `--replicates` replicates;
it prints each variant's bias, coverage, mean SE, remainder and held-out losses, the estimate and remainder
paired by replicate against the configured networks (about 30 s per replicate and variant):

    .venv/bin/python scripts/diag_jepa.py --nuisances outputs/bench_dml --replicates 30 \
        --variant dml.val_fraction=0.2 --variant dml.nuisance.propensity.optimizer.lr=0.0005

`--pixel-bound` fits nothing either: it reads the confounders from hand-made per-frame pixel features (centroid,
mass, peak, spread), a bound on what the simulated frames show at the given simulator settings:

    .venv/bin/python scripts/diag_jepa.py --pixel-bound seed=1 data.pixel_noise=0.05 data.texture_contrast=0.05

`--supervised-bound` reads them with the JEPA's own encoder (`model.*`, fresh) and pooling trained end to end
*with* the true U, f and g as labels (1 600 videos, held-out R² on 400): what this architecture can extract from
these frames at this sample size, a bound for the self-supervised representation (minutes):

    .venv/bin/python scripts/diag_jepa.py --supervised-bound --threads 2 seed=1000

`--reliability R2 ...` asks what remainder a representation of a given quality would leave: it replaces the
video by the true U plus Gaussian noise such that each confounder's R² is the given value (one value, or six:
x0 y0 vx vy size brightness), fits the linear nuisances on 1 600 rows and averages the remainder on the other
400 over `--replicates` simulated data sets (no videos, no networks; seconds):

    .venv/bin/python scripts/diag_jepa.py --reliability 0.9 0.9 0.75 0.75 0.93 0.8
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


def _compose(overrides: list[str], output_dir: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from causal_engine.run import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=jepa_dml", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.root_dir = str(REPO)
    return cfg


def _ridge_r2(z_tr: np.ndarray, v_tr: np.ndarray, z_te: np.ndarray, v_te: np.ndarray) -> np.ndarray:
    """Held-out R² per column of v [n, k] of a ridge regression on standardised z (penalty by LOO-CV)."""
    from sklearn.linear_model import RidgeCV

    pred = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(z_tr, v_tr).predict(z_te).reshape(v_te.shape)
    return 1.0 - ((v_te - pred) ** 2).sum(0) / ((v_te - v_te.mean(0)) ** 2).sum(0)


def _linear_nuisances(
    x_tr: np.ndarray, d_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ĝ0, ĝ1, ê) on the held-out rows: ridge per arm and L2-logistic regression, penalties by CV."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    g = [RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(x_tr[d_tr == a], y_tr[d_tr == a]).predict(x_te) for a in (0, 1)]
    with warnings.catch_warnings():  # sklearn 1.9's FutureWarnings about its own defaults
        warnings.simplefilter("ignore", FutureWarning)
        m = LogisticRegressionCV(Cs=np.logspace(-4, 1, 8), cv=3, max_iter=1000).fit(x_tr, d_tr)
    return g[0], g[1], m.predict_proba(x_te)[:, 1]


def _mean_se(x: np.ndarray) -> str:
    """`+mean (SE of the mean)` of x [n]; the SE only when n > 1."""
    return f"{x.mean():+.4f} ({x.std(ddof=1) / np.sqrt(len(x)):.4f})" if len(x) > 1 else f"{x.mean():+.4f}"


def _losses(g0, g1, m, d, y, e, true0, true1) -> dict[str, float]:
    """Held-out factual MSE, propensity BCE and the AIPW remainder (mean and SE over rows)."""
    m = np.clip(m, 1e-3, 1 - 1e-3)
    rem = aipw_remainder(g0, g1, m, e, true0, true1)  # [n_test]
    return {
        "outcome_mse": float(np.mean((y - np.where(d == 1, g1, g0)) ** 2)),
        "propensity_bce": float(-np.mean(d * np.log(m) + (1 - d) * np.log(1 - m))),
        "remainder": float(rem.mean()),
        "remainder_se": float(rem.std(ddof=1) / np.sqrt(len(rem))),
    }


@torch.no_grad()
def _embed(jepa, videos: torch.Tensor, encoder: str, pools: Sequence[str]) -> dict[str, np.ndarray]:
    """Features [N, D'] per pooling in `pools` of the target (EMA) or online (context) encoder, from one pass of
    the encoder; `encoder` "target+layers" concatenates the pooled tokens before and after every transformer
    block."""
    net = jepa.encoder if encoder == "online" else jepa.target_encoder
    jepa.eval()
    out: dict[str, list[torch.Tensor]] = {pool: [] for pool in pools}
    for i in range(0, len(videos), 256):
        chunk = videos[i : i + 256]  # [b, C, T, H, W]
        if encoder == "target+layers":
            x = net.tokens(chunk)  # [b, N, D]
            layers = [x]
            for block in net.blocks.layers:
                x = block(x)
                layers.append(x)
            layers[-1] = net.norm(x)
        else:
            layers = [net(chunk)]
        for pool in pools:
            out[pool].append(torch.cat([jepa.pool(h, chunk.shape, pool) for h in layers], dim=1))
    return {pool: torch.cat(parts).double().numpy() for pool, parts in out.items()}


def aipw_remainder(
    g0: np.ndarray, g1: np.ndarray, m: np.ndarray, e: np.ndarray, true0: np.ndarray, true1: np.ndarray
) -> np.ndarray:
    """Per-row conditional bias of the AIPW-ATE score given nuisances (ĝ0, ĝ1, ê) and the truth (g0, g1, e):
    E[ψ | U] - τ(U) = (ê - e) · [(ĝ1 - g1) / ê + (ĝ0 - g0) / (1 - ê)], zero when either nuisance is exact."""
    return (m - e) * ((g1 - true1) / m + (g0 - true0) / (1 - m))


def reliability_remainder(r2: list[float], replicates: int = 8, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Mean (and SE over replicates) remainder of linear nuisances on U observed with noise of reliability `r2`."""
    from causal_engine.dml.simulate import CONFOUNDERS, baseline_outcome, treatment_logit

    rng = np.random.default_rng(seed)
    reliability = np.broadcast_to(np.asarray(r2, dtype=float), (len(CONFOUNDERS),))
    noise_sd = np.sqrt((1 / 3) * (1 - reliability) / reliability)  # Var U = 1/3 on [-1, 1]
    out = []
    for _ in range(replicates):
        u = rng.uniform(-1, 1, (n, len(CONFOUNDERS)))  # [n, 6]
        e = 1 / (1 + np.exp(-treatment_logit(u)))
        d = (rng.uniform(size=n) < e).astype(float)
        true0 = baseline_outcome(u)
        y = true0 + d + 0.5 * rng.normal(size=n)
        z = u + rng.normal(size=u.shape) * noise_sd
        z = (z - z.mean(0)) / z.std(0)
        tr, te = np.arange(n) < 0.8 * n, np.arange(n) >= 0.8 * n
        g0, g1, m = _linear_nuisances(z[tr], d[tr], y[tr], z[te])
        out.append(aipw_remainder(g0, g1, np.clip(m, 1e-3, 1 - 1e-3), e[te], true0[te], true0[te] + 1).mean())
    return float(np.mean(out)), float(np.std(out, ddof=1) / np.sqrt(replicates))


# Edges of the true-propensity bins over which `decompose` splits the remainder.
E_BINS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0)


def decompose(cfg, truth, oof: dict[str, np.ndarray]) -> dict:
    """estimate - truth of out-of-fold predictions `oof` (g0, g1, m, each [N]) on the simulated draw `truth` =
    mean remainder (nuisance bias) + sampling noise; the noise is split further into `oracle_noise` (the AIPW
    estimate with the true nuisances, shared by every estimator on the same data) and the rest.
    `remainder_by_e` is each true-propensity bin's (`E_BINS`) share of the remainder (they sum to it): the
    1/ê weights make the tails' share depend on a few rows."""
    from causal_engine.dml.scores import score_elements
    from causal_engine.dml.simulate import baseline_outcome

    d, y, n = truth.treatment, truth.outcome, len(truth.outcome)

    def aipw(g0: np.ndarray, g1: np.ndarray, m: np.ndarray) -> np.ndarray:  # the run's own ATE score ψ per row [N]
        return score_elements("ate", y, d, g0=g0, g1=g1, m=m, trim=cfg.dml.trim).psi_b

    psi = aipw(oof["g0"], oof["g1"], oof["m"])
    m = np.clip(oof["m"], cfg.dml.trim, 1 - cfg.dml.trim)
    true0 = baseline_outcome(truth.confounders)
    rem = aipw_remainder(oof["g0"], oof["g1"], m, truth.propensity, true0, true0 + truth.tau)
    oracle = aipw(true0, true0 + truth.tau, truth.propensity).mean() - truth.true_ate
    bins = np.digitize(truth.propensity, E_BINS[1:-1])  # [N] bin of each row's true propensity
    return {
        "remainder_by_e": [float(rem[bins == b].sum() / n) for b in range(len(E_BINS) - 1)],
        "estimate": float(psi.mean()),
        "truth": truth.true_ate,
        "remainder": float(rem.mean()),
        "remainder_se": float(rem.std(ddof=1) / np.sqrt(n)),
        "noise": float(psi.mean() - truth.true_ate - rem.mean()),
        "oracle_noise": float(oracle),
        "se": float(psi.std(ddof=1) / np.sqrt(n)),
    }


def decompose_run(run_dir: Path, cfg=None) -> dict:
    """`decompose` of a finished simulated run's saved folds; `cfg` defaults to the run's own
    `.hydra/config.yaml`."""
    from hydra.utils import instantiate

    from causal_engine.dml.simulate import simulate_videos

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml") if cfg is None else cfg
    truth = simulate_videos(**instantiate(cfg.data).sim_kwargs)
    oof = {key: np.full(len(truth.outcome), np.nan) for key in ("g0", "g1", "m")}
    for path in sorted((run_dir / "rep0").glob("fold*/oof.npz")):
        with np.load(path) as saved:
            for key in oof:
                oof[key][saved["test"]] = saved[key]
    if np.isnan(oof["m"]).any():
        raise SystemExit(f"{run_dir}: some rows have no out-of-fold prediction (an unfinished run?)")
    return decompose(cfg, truth, oof)


def decompose_bench(out: Path) -> str:
    """The mean over a `scripts/bench_dml.py --out OUT` benchmark's replicates of JEPA-DML's error and its parts
    (from the replicates' saved folds), as a Markdown table."""
    from bench_dml import load_replicates

    records = load_replicates(out)
    parts, shares = [], []
    for r in sorted(records, key=lambda r: r["seed"]):
        cfg = _compose([f"seed={r['seed']}", *r["overrides"]], out / "runs" / f"seed{r['seed']}")
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

    from bench_dml import QUIET, load_replicates
    from causal_engine.dml.folds import stratified_folds
    from causal_engine.dml.simulate import simulate_videos

    def folds(seed: int, cfg, truth) -> Iterator:
        for fold in stratified_folds(truth.treatment, cfg.dml.k_folds, n_rep=1, seed=cfg.dml.split_seed)[0]:
            jepa = instantiate(cfg.model, in_channels=int(truth.videos.shape[1]))
            path = out / "runs" / f"seed{seed}" / f"rep0/fold{fold.k}/jepa/checkpoints/last.ckpt"
            jepa.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
            yield fold, jepa

    for r in sorted(load_replicates(out), key=lambda r: r["seed"])[:replicates]:
        cfg = _compose([f"seed={r['seed']}", *QUIET, *r["overrides"]], workdir)
        truth = simulate_videos(**instantiate(cfg.data).sim_kwargs)
        yield r["seed"], cfg, truth, folds(r["seed"], cfg, truth)


def with_variant(cfg, variant: str, output_dir: Path):
    """A copy of `cfg` with a nuisance variant's comma-separated `key=value` overrides (values parsed as YAML)
    and its outputs under `output_dir`."""
    from causal_engine.train import with_output_dir

    vcfg = with_output_dir(cfg, output_dir)
    for item in filter(None, variant.split(",")):
        key, value = item.split("=", 1)
        OmegaConf.update(vcfg, key, yaml.safe_load(value), force_add=True)
    return vcfg


def compare_nuisances(out: Path, replicates: int, variants: Sequence[str], workdir: Path) -> str:
    """Nuisance variants refit on the embeddings of a `bench_dml.py --out OUT` benchmark's own saved per-fold
    JEPAs (nothing but the outcome and propensity networks is refit): per variant, over the first `replicates`
    replicates, JEPA-DML's bias, coverage and mean SE, the AIPW remainder and the held-out losses, with the
    estimate and remainder paired by replicate against the first variant. The networks are fit without the
    JEPA fit before them, so even the configured variant ('') differs from the benchmark's own nuisances by
    their initialisation: compare the variants with each other, not with the benchmark."""
    from causal_engine.dml.crossfit import fit_fold
    from causal_engine.dml.data import CausalSample

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
                preds, record = fit_fold(vcfg, sample, fold, int(cfg.seed) + fold.k)
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
        lines.append(f"| {variant or '(as configured)'} | {_mean_se(a[:, 0])} | {a[:, 3].mean():.2f} | "
                     f"{a[:, 2].mean():.4f} | {_mean_se(a[:, 1])} | {a[:, 4].mean():.4f} | {a[:, 5].mean():.4f} | "
                     f"{_mean_se(a[:, 0] - base[:, 0])} | {_mean_se(a[:, 1] - base[:, 1])} |")  # fmt: skip
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

    from causal_engine.dml.crossfit import fit_fold
    from causal_engine.dml.data import CausalSample
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
            features = {f"target/{pool}": z for pool, z in _embed(jepa, truth.videos, "target", chosen).items()}
            zs = features[f"target/{cfg.model.pool}"]
            zs = (zs - zs[tr].mean(0)) / (zs[tr].std(0) + 1e-8)
            features[f"U projected from {cfg.model.pool}"] = (
                RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(zs[tr], u[tr]).predict(zs)
            )
            features["true U"] = u
            for name, z in features.items():
                zz = (z - z[tr].mean(0)) / (z[tr].std(0) + 1e-8)
                r2 = _ridge_r2(zz[tr], targets[tr], zz[te], targets[te])
                sample = CausalSample(torch.from_numpy(z).float(), truth.treatment, truth.outcome)
                fcfg = with_output_dir(cfg, workdir / f"seed{seed}" / name.replace("/", "-"))
                preds, _ = fit_fold(fcfg, sample, fold, int(cfg.seed) + fold.k)
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
        lines.append(f"| {name} | {int(a[0, -1])} | {r2} | {a[:, -2].mean():+.4f} | {_mean_se(diff)} |")
    return "\n".join(lines)


def pixel_bound(overrides: list[str]) -> dict[str, float]:
    """What the frames show without any learning: held-out ridge R² (1 600 / 400 videos) of each confounder from
    hand-made per-frame features of the bright part of the image (intensity-weighted centroid, mass, peak,
    spread, and the centroid's squares and product). A simulator setting that keeps this low hides U."""
    from hydra.utils import instantiate

    from causal_engine.dml.simulate import CONFOUNDERS, simulate_videos

    truth = simulate_videos(**instantiate(_compose(overrides, Path("/nonexistent")).data).sim_kwargs)
    v = np.clip(truth.videos.numpy().mean(1), 0, None)  # [N, T, H, W], channels averaged; the distractor is dark
    yy, xx = np.meshgrid(np.arange(v.shape[2]), np.arange(v.shape[3]), indexing="ij")
    mass = v.sum((2, 3))  # [N, T]
    cx, cy = (v * xx).sum((2, 3)) / mass, (v * yy).sum((2, 3)) / mass
    spread = (v * (xx - cx[..., None, None]) ** 2).sum((2, 3)) / mass
    z = np.c_[cx, cy, mass, v.max((2, 3)), spread, cx**2, cy**2, cx * cy]  # [N, 8T]
    z = (z - z[:1600].mean(0)) / (z[:1600].std(0) + 1e-8)
    u = truth.confounders
    r2 = _ridge_r2(z[:1600], u[:1600], z[1600:2000], u[1600:2000])
    return dict(zip(CONFOUNDERS, np.round(r2, 3).tolist(), strict=True))


def supervised_bound(
    overrides: list[str], epochs: int = 60, n_train: int = 1600, n_test: int = 400, batch: int = 64
) -> dict[str, float]:
    """Held-out R² of each confounder, f(U) and g(U) from the configured JEPA's encoder and pooling, trained from
    scratch by MSE on the standardised true values of the first `n_train` videos (AdamW, one-cycle learning
    rate), tested on the last `n_test`. Supervision tells the network what to look for, which the JEPA must find
    without labels, so this bounds what its representation can carry at this sample size."""
    import torch.nn.functional as F
    from hydra.utils import instantiate

    from causal_engine.dml.simulate import CONFOUNDERS, baseline_outcome, simulate_videos, treatment_logit

    cfg = _compose(overrides, Path("/nonexistent"))
    truth = simulate_videos(**instantiate(cfg.data).sim_kwargs)
    if n_train + n_test > len(truth.outcome):
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds data.n_samples = {len(truth.outcome)}")
    torch.manual_seed(int(cfg.seed))
    videos = torch.as_tensor(truth.videos).float()  # [N, C, T, H, W]
    u = truth.confounders
    targets = np.c_[u, treatment_logit(u), baseline_outcome(u)]  # [N, 8]
    tr, te = np.arange(n_train), np.arange(len(u) - n_test, len(u))
    mu, sd = targets[tr].mean(0), targets[tr].std(0)
    labels = torch.tensor((targets - mu) / sd, dtype=torch.float32)
    jepa = instantiate(cfg.model, in_channels=int(videos.shape[1]))
    head = torch.nn.Linear(jepa.pool(jepa.encoder(videos[:1]), videos.shape).shape[1], targets.shape[1])

    def predict(v: torch.Tensor) -> torch.Tensor:  # [b, C, T, H, W] → standardised targets [b, 8]
        return head(jepa.pool(jepa.encoder(v), v.shape))

    params = [*jepa.encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    steps = -(-n_train // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * steps)
    for _ in range(epochs):
        for rows in torch.randperm(n_train).split(batch):
            loss = F.mse_loss(predict(videos[rows]), labels[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        pred = torch.cat([predict(videos[rows]) for rows in torch.as_tensor(te).split(256)]).numpy()
    truth_te = labels[te].numpy()
    r2 = 1.0 - ((pred - truth_te) ** 2).sum(0) / ((truth_te - truth_te.mean(0)) ** 2).sum(0)
    return dict(zip([*CONFOUNDERS, "f", "g"], np.round(r2.astype(float), 4).tolist(), strict=True))


def diagnose(overrides: list[str], fold_k: int, out: Path, variants: list[str]) -> dict:
    import lightning as L
    from hydra.utils import instantiate

    from causal_engine.dml.crossfit import fit_fold, fit_jepa, inner_split
    from causal_engine.dml.folds import stratified_folds
    from causal_engine.dml.simulate import CONFOUNDERS, baseline_outcome, simulate_videos, treatment_logit
    from causal_engine.jepa.module import POOLS

    cfg = _compose(overrides, out)
    dml = cfg.dml
    data = instantiate(cfg.data)
    sample = data.sample()
    truth = simulate_videos(**data.sim_kwargs)  # the same draw, with the ground truth the sample leaves out
    assert np.array_equal(truth.outcome, sample.outcome)  # the same draw as the run's data
    u = truth.confounders
    true0, e = baseline_outcome(u), truth.propensity
    true1 = true0 + truth.tau
    fold = stratified_folds(sample.treatment, dml.k_folds, n_rep=1, seed=dml.split_seed)[0][fold_k]
    seed = int(cfg.seed) + fold_k
    # The same inner split, seeding and JEPA fit as crossfit.fit_fold.
    L.seed_everything(seed, workers=True, verbose=False)
    fit_rows, val_rows = inner_split(fold, seed, dml.val_fraction)
    start, cpu = time.time(), time.process_time()
    jepa, _ = fit_jepa(cfg, sample, fit_rows, val_rows, seed, "jepa")
    report: dict = {"overrides": overrides, "fold": fold_k, "jepa_wall_s": time.time() - start,
                    "jepa_cpu_s": time.process_time() - cpu}  # fmt: skip
    tr, te = fold.train, fold.test
    d, y = sample.treatment, sample.outcome
    args = (d[te], y[te], e[te], true0[te], true1[te])
    targets = np.c_[u, treatment_logit(u), true0]  # [N, 8]
    names = [*CONFOUNDERS, "f", "g"]
    report["representations"] = {}
    for encoder in ("target", "online", "target+layers"):
        pools = POOLS if encoder != "target+layers" else ("frames_std",)
        for pool, z in _embed(jepa, sample.features, encoder, pools).items():  # each [N, D']
            zs = (z - z[tr].mean(0)) / (z[tr].std(0) + 1e-8)
            r2 = _ridge_r2(zs[tr], targets[tr], zs[te], targets[te])
            report["representations"][f"{encoder}/{pool}"] = {
                "dim": int(z.shape[1]),
                "probe_r2": dict(zip(names, np.round(r2, 3).tolist(), strict=True)),
                "probe_r2_u_mean": float(np.mean(r2[: len(CONFOUNDERS)])),
                "linear": _losses(*_linear_nuisances(zs[tr], d[tr], y[tr], zs[te]), *args),
            }
    # The configured networks on the configured representation, fit by the run's own fold code (the tabular
    # path: no JEPA), once per nuisance variant.
    z = torch.from_numpy(jepa.embed(sample.features)).float()
    report["networks"] = {}
    for i, variant in enumerate(variants):
        vcfg = with_variant(cfg, variant, out / f"variant{i}")
        start = time.time()
        preds, _ = fit_fold(vcfg, replace(sample, features=z, confounders=None), fold, seed)
        report["networks"][variant or "configured"] = {
            **_losses(preds["g0"], preds["g1"], preds["m"], *args),
            "wall_s": time.time() - start,
        }
    report["linear_on_true_u"] = _losses(*_linear_nuisances(u[tr], d[tr], y[tr], u[te]), *args)
    report["truth"] = _losses(true0[te], true1[te], e[te], *args)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", type=int, default=0, help="which fold of the run's plan to fit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default /tmp/diag_jepa/<overrides>)")
    parser.add_argument(
        "--variant",
        action="append",
        help="nuisance variant fit on the same embeddings, comma-separated keys, e.g. "
        "dml.nuisance.outcome.dropout=0.3,dml.nuisance_epochs=60 (repeatable; '' = as configured)",
    )
    parser.add_argument("--run", type=Path, default=None, help="decompose a finished run's error instead (no fits)")
    parser.add_argument("--pixel-bound", action="store_true", help="R² of U from hand-made pixel features instead")
    parser.add_argument("--supervised-bound", action="store_true", help="R² of U from the encoder trained on U")
    parser.add_argument("--bench", type=Path, default=None, help="decompose a bench_dml.py --out folder instead")
    parser.add_argument("--readouts", type=Path, default=None, help="compare poolings of a bench's saved JEPAs")
    parser.add_argument("--nuisances", type=Path, default=None,
                        help="compare --variant nuisances on a bench's saved JEPAs")  # fmt: skip
    parser.add_argument("--readout-replicates", type=int, default=6, help="replicates for --readouts")
    parser.add_argument("--readout-pools", nargs="+", default=None, help="poolings for --readouts (default all)")
    parser.add_argument("--reliability", type=float, nargs="+", default=None, help="remainder at these probe R²s")
    parser.add_argument("--replicates", type=int, default=8, help="data sets for --reliability, --nuisances")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of experiment=jepa_dml, e.g. seed=1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    if args.reliability is not None:
        if len(args.reliability) not in (1, 6):
            parser.error("--reliability takes one R² or six (x0 y0 vx vy size brightness)")
        mean, se = reliability_remainder(args.reliability, args.replicates)
        print(f"reliability {args.reliability}: remainder {mean:+.3f} (SE {se:.3f}, {args.replicates} data sets)")
        return
    if args.pixel_bound:
        print(f"{args.overrides or '(defaults)'}: {pixel_bound(args.overrides)}")
        return
    if args.supervised_bound:
        print(f"{args.overrides or '(defaults)'}: {supervised_bound(args.overrides)}")
        return
    if args.bench is not None:
        print(decompose_bench(args.bench))
        return
    if args.readouts is not None:
        workdir = args.out or Path("/tmp/diag_jepa/readouts") / args.readouts.name
        print(compare_readouts(args.readouts, args.readout_replicates, args.readout_pools, workdir))
        return
    if args.nuisances is not None:
        workdir = args.out or Path("/tmp/diag_jepa/nuisances") / args.nuisances.name
        print(compare_nuisances(args.nuisances, args.replicates, ["", *(args.variant or [])], workdir))
        return
    if args.run is not None:
        r = decompose_run(args.run)
        print(f"{args.run}: estimate {r['estimate']:.3f} (SE {r['se']:.3f}), truth {r['truth']:g}: error "
              f"{r['estimate'] - r['truth']:+.3f} = remainder {r['remainder']:+.3f} (SE {r['remainder_se']:.3f}) "
              f"+ noise {r['noise']:+.3f}")  # fmt: skip
        return
    out = args.out or Path("/tmp/diag_jepa") / ("_".join(args.overrides).replace("/", "-") or "defaults")
    report = diagnose(args.overrides, args.fold, out, args.variant or [""])
    out.mkdir(parents=True, exist_ok=True)
    (out / "diag.json").write_text(json.dumps(report, indent=1))
    print(f"overrides {args.overrides or '(defaults)'}, fold {args.fold}: "
          f"JEPA fit {report['jepa_wall_s']:.0f} s wall / {report['jepa_cpu_s']:.0f} s CPU")  # fmt: skip
    header = f"{'':<34} {'outcome MSE':>11} {'prop. BCE':>9} {'remainder (SE)':>16}"
    print("probes: held-out ridge R²; linear nuisances: ridge per arm + logistic regression")
    for name, rep in report["representations"].items():
        probes = " ".join(f"{k} {v:.2f}" for k, v in rep["probe_r2"].items())
        print(f"{name:<18} dim {rep['dim']:>4}  {probes} | U mean {rep['probe_r2_u_mean']:.3f}")
    print(header)
    rows = {f"linear on {k}": v["linear"] for k, v in report["representations"].items()}
    rows |= {f"net {k}": v for k, v in report["networks"].items()}
    rows |= {"linear on true U": report["linear_on_true_u"], "true g, e": report["truth"]}
    for name, r in rows.items():
        print(f"{name:<34} {r['outcome_mse']:>11.3f} {r['propensity_bce']:>9.3f} "
              f"{r['remainder']:>+8.3f} ({r['remainder_se']:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
