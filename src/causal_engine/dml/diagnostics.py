"""Diagnostics of DML on simulated videos, computable only where the truth is known: the AIPW remainder (the
bias the fitted nuisances leave) and the decomposition of a run's error into remainder and sampling noise,
probes of what a representation carries, bounds on what the frames show, and one fold's nuisances refit on
the same embeddings. `scripts/diag_jepa.py` is the command line over these functions.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml
from omegaconf import OmegaConf

from causal_engine.train import compose


def ridge_r2(z_tr: np.ndarray, v_tr: np.ndarray, z_te: np.ndarray, v_te: np.ndarray) -> np.ndarray:
    """Held-out R² per column of v [n, k] of a ridge regression on standardised z (penalty by LOO-CV)."""
    from sklearn.linear_model import RidgeCV

    pred = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(z_tr, v_tr).predict(z_te).reshape(v_te.shape)
    return 1.0 - ((v_te - pred) ** 2).sum(0) / ((v_te - v_te.mean(0)) ** 2).sum(0)


def linear_nuisances(
    x_tr: np.ndarray, d_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ĝ0, ĝ1, ê) on the held-out rows: ridge per arm and L2-logistic regression, penalties by CV."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    g = [RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(x_tr[d_tr == a], y_tr[d_tr == a]).predict(x_te) for a in (0, 1)]
    with warnings.catch_warnings():  # sklearn 1.9's FutureWarnings about its own defaults
        warnings.simplefilter("ignore", FutureWarning)
        m = LogisticRegressionCV(Cs=np.logspace(-4, 1, 8), cv=3, max_iter=1000).fit(x_tr, d_tr)
    return g[0], g[1], m.predict_proba(x_te)[:, 1]


def mean_se(x: np.ndarray) -> str:
    """`+mean (SE of the mean)` of x [n]; the SE only when n > 1."""
    return f"{x.mean():+.4f} ({x.std(ddof=1) / np.sqrt(len(x)):.4f})" if len(x) > 1 else f"{x.mean():+.4f}"


def nuisance_losses(g0, g1, m, d, y, e, true0, true1) -> dict[str, float]:
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
def embed_readouts(jepa, videos: torch.Tensor, encoder: str, pools: Sequence[str]) -> dict[str, np.ndarray]:
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
        g0, g1, m = linear_nuisances(z[tr], d[tr], y[tr], z[te])
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
        return score_elements("ate", y, d, {"g0": g0, "g1": g1, "m": m}, trim=cfg.dml.trim).psi_b

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
    from causal_engine.dml.store import load_out_of_fold

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml") if cfg is None else cfg
    truth = simulate_videos(**instantiate(cfg.data).sim_kwargs)
    oof = load_out_of_fold(run_dir, len(truth.outcome))
    if np.isnan(oof["m"]).any():
        raise SystemExit(f"{run_dir}: some rows have no out-of-fold prediction (an unfinished run?)")
    return decompose(cfg, truth, oof)


def with_variant(cfg, variant: str, output_dir: Path):
    """A copy of `cfg` with a nuisance variant's comma-separated `key=value` overrides (values parsed as YAML)
    and its outputs under `output_dir`."""
    from causal_engine.train import with_output_dir

    vcfg = with_output_dir(cfg, output_dir)
    for item in filter(None, variant.split(",")):
        key, value = item.split("=", 1)
        OmegaConf.update(vcfg, key, yaml.safe_load(value), force_add=True)
    return vcfg


def pixel_bound(overrides: list[str]) -> dict[str, float]:
    """What the frames show without any learning: held-out ridge R² (1 600 / 400 videos) of each confounder from
    hand-made per-frame features of the bright part of the image (intensity-weighted centroid, mass, peak,
    spread, and the centroid's squares and product). A simulator setting that keeps this low hides U."""
    from hydra.utils import instantiate

    from causal_engine.dml.simulate import CONFOUNDERS, simulate_videos

    cfg = compose(["experiment=jepa_dml", *overrides], Path("/nonexistent"))
    truth = simulate_videos(**instantiate(cfg.data).sim_kwargs)
    v = np.clip(truth.videos.numpy().mean(1), 0, None)  # [N, T, H, W], channels averaged; the distractor is dark
    yy, xx = np.meshgrid(np.arange(v.shape[2]), np.arange(v.shape[3]), indexing="ij")
    mass = v.sum((2, 3))  # [N, T]
    cx, cy = (v * xx).sum((2, 3)) / mass, (v * yy).sum((2, 3)) / mass
    spread = (v * (xx - cx[..., None, None]) ** 2).sum((2, 3)) / mass
    z = np.c_[cx, cy, mass, v.max((2, 3)), spread, cx**2, cy**2, cx * cy]  # [N, 8T]
    z = (z - z[:1600].mean(0)) / (z[:1600].std(0) + 1e-8)
    u = truth.confounders
    r2 = ridge_r2(z[:1600], u[:1600], z[1600:2000], u[1600:2000])
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

    cfg = compose(["experiment=jepa_dml", *overrides], Path("/nonexistent"))
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

    from causal_engine.dml.fold import fit_fold, fit_jepa, fold_seed, inner_split
    from causal_engine.dml.folds import stratified_folds
    from causal_engine.dml.simulate import CONFOUNDERS, baseline_outcome, simulate_videos, treatment_logit
    from causal_engine.jepa.module import POOLS

    cfg = compose(["experiment=jepa_dml", *overrides], out)
    dml = cfg.dml
    data = instantiate(cfg.data)
    sample = data.sample()
    truth = simulate_videos(**data.sim_kwargs)  # the same draw, with the ground truth the sample leaves out
    assert np.array_equal(truth.outcome, sample.outcome)  # the same draw as the run's data
    u = truth.confounders
    true0, e = baseline_outcome(u), truth.propensity
    true1 = true0 + truth.tau
    fold = stratified_folds(sample.treatment, dml.k_folds, n_rep=1, seed=dml.split_seed)[0][fold_k]
    seed = fold_seed(cfg.seed, fold, dml.k_folds)
    # The same inner split, seeding and JEPA fit as fold.fit_fold.
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
        for pool, z in embed_readouts(jepa, sample.features, encoder, pools).items():  # each [N, D']
            zs = (z - z[tr].mean(0)) / (z[tr].std(0) + 1e-8)
            r2 = ridge_r2(zs[tr], targets[tr], zs[te], targets[te])
            report["representations"][f"{encoder}/{pool}"] = {
                "dim": int(z.shape[1]),
                "probe_r2": dict(zip(names, np.round(r2, 3).tolist(), strict=True)),
                "probe_r2_u_mean": float(np.mean(r2[: len(CONFOUNDERS)])),
                "linear": nuisance_losses(*linear_nuisances(zs[tr], d[tr], y[tr], zs[te]), *args),
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
            **nuisance_losses(preds["g0"], preds["g1"], preds["m"], *args),
            "wall_s": time.time() - start,
        }
    report["linear_on_true_u"] = nuisance_losses(*linear_nuisances(u[tr], d[tr], y[tr], u[te]), *args)
    report["truth"] = nuisance_losses(true0[te], true1[te], e[te], *args)
    return report
