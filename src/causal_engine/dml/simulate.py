"""Confounded videos: latent confounders U are visible only through the frames.

Each video shows one bright object moving across a scene; the object's start position, velocity, size and
brightness are the confounders U (each uniform on [-1, 1] before being mapped to pixels); they drive both
the treatment and the outcome. A dark distractor blob, a static background texture and pixel noise vary
too but touch neither treatment nor outcome, so a representation has to find U among irrelevant variation.
The true U is returned for diagnostics only (linear-probe R², the oracle DML baseline); no estimator may
use it.

    T ~ Bernoulli(σ(s · f(U))),  Y = g(U) + τ(U)·T + ε,  ε ~ N(0, noise_sd²)

`treatment_strength` s is the overlap knob: 0 is a randomised trial, larger values push propensities
towards 0 and 1. τ(U) = ate by default; with `heterogeneous=true`, τ(U) = ate + 0.5·u_size, whose
population mean is exactly `ate` because u_size is uniform on [-1, 1].

`hidden_confounder_strength` c adds a confounder that is never rendered: u_h ~ U[-1, 1] enters the treatment
logit and the baseline outcome with coefficient c each (f + c·u_h, g + c·u_h), so no representation of the
frames can adjust for it and the sensitivity analysis has a known omitted confounder to bound. At c = 1 it is
as strong as the brightness, a visible confounder with coefficient 1 in both, which the analysis can benchmark.
u_h comes from its own random stream, so the frames (and, at c = 0, everything) equal the draw without it.

DML on a representation is unbiased only if the video determines U (no confounding left given the
frames), so the nuisance variation must not destroy what U looks like. The object is composited over the
scene (its blob profile is its opacity), so the distractor and texture never dim or shift it; the
distractor is dark so it cannot be mistaken for the object; the object travels up to `motion` of the frame
over the clip (a velocity of a few pixels, not a sub-pixel drift). Pixel noise (`pixel_noise`) and texture
contrast (`texture_contrast`) are the remaining loss: at their defaults (0.02) hand-made centroid features
read x0 with held-out ridge R² 0.99, at 0.05 0.97 (docs/jepa_dml.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from causal_engine.dml.disk import NpyWriter

CONFOUNDERS = ("x0", "y0", "vx", "vy", "size", "brightness")


@dataclass(frozen=True)
class VideoSample:
    """A simulated data set with its ground truth."""

    videos: torch.Tensor  # [N, C, T, H, W] float32
    treatment: np.ndarray  # [N] in {0, 1}
    outcome: np.ndarray  # [N]
    confounders: np.ndarray  # [N, 6] the true U, diagnostics only
    propensity: np.ndarray  # [N] the true P(T=1 | U)
    tau: np.ndarray  # [N] the true individual effects τ(U)
    true_ate: float  # population ATE (exact)
    hidden: np.ndarray  # [N] the unrendered confounder u_h (it acts only when hidden_confounder_strength ≠ 0)


def treatment_logit(u: np.ndarray) -> np.ndarray:
    """Treatment logit: objects further right, brighter, moving left are treated more often."""
    return 1.5 * u[:, 0] + 1.0 * u[:, 5] - 0.8 * u[:, 2] + 0.5 * u[:, 0] * u[:, 1]


def baseline_outcome(u: np.ndarray) -> np.ndarray:
    """Baseline outcome: shares the treatment's drivers (hence confounding), with non-linear terms."""
    return 1.5 * u[:, 0] + 1.0 * u[:, 5] - 0.5 * u[:, 2] + 0.5 * np.sin(np.pi * u[:, 1]) + 0.5 * u[:, 4] * u[:, 0]


def _render(cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, amplitude: np.ndarray, h: int, w: int) -> np.ndarray:
    """Gaussian blobs: centres/radii/amplitudes [N, T] in pixels → frames [N, T, H, W]."""
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")  # [H, W]
    d2 = (xx - cx[..., None, None]) ** 2 + (yy - cy[..., None, None]) ** 2  # [N, T, H, W]
    return amplitude[..., None, None] * np.exp(-d2 / (2.0 * radius[..., None, None] ** 2))


def simulate_videos(
    n_samples: int = 2000,
    dims: Sequence[int] = (1, 8, 16, 16),
    *,
    treatment_strength: float = 1.0,
    ate: float = 1.0,
    heterogeneous: bool = False,
    noise_sd: float = 0.5,
    pixel_noise: float = 0.02,
    texture_contrast: float = 0.02,
    motion: float = 0.35,
    spread: float = 0.25,
    distractor: float = -0.5,
    hidden_confounder_strength: float = 0.0,
    seed: int = 0,
) -> VideoSample:
    """Draw `n_samples` confounded videos of shape `dims` = (C, T, H, W) with treatment and outcome."""
    c, t, h, w = (int(x) for x in dims)
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1.0, 1.0, size=(n_samples, len(CONFOUNDERS)))  # [N, 6]
    frames = np.arange(t) / max(t - 1, 1)  # [T] time in [0, 1]
    scale = min(h, w)

    # The object: start in the middle `2 * spread` of the frame, travel up to `motion` of the frame over the clip.
    span_x, span_y = w - 1, h - 1
    cx = (0.5 + spread * u[:, :1]) * span_x + motion * u[:, 2:3] * frames * span_x  # [N, T]
    cy = (0.5 + spread * u[:, 1:2]) * span_y + motion * u[:, 3:4] * frames * span_y
    radius = np.broadcast_to(scale * (0.125 + 0.05 * u[:, 4:5]), cx.shape)
    # Brightness flickers slightly over time so that it is not a constant offset.
    amplitude = (1.0 + 0.5 * u[:, 5:6]) * (1.0 + 0.1 * np.sin(2 * np.pi * frames))

    # Nuisance variation behind the object: a distractor blob and a static texture of random contrast.
    d = rng.uniform(-1.0, 1.0, size=(n_samples, 5))
    dx = (0.5 + 0.4 * d[:, :1]) * span_x + 0.2 * d[:, 2:3] * frames * span_x
    dy = (0.5 + 0.4 * d[:, 1:2]) * span_y + 0.2 * d[:, 3:4] * frames * span_y
    d_amp = np.broadcast_to(distractor * (1.0 + 0.2 * d[:, 4:5]), dx.shape)
    scene = _render(dx, dy, np.full_like(dx, 0.08 * scale), d_amp, h, w)  # [N, T, H, W]
    scene = scene + rng.normal(size=(n_samples, 1, h, w)) * rng.uniform(0.0, texture_contrast, (n_samples, 1, 1, 1))
    # The object is composited over the scene (its blob profile is its opacity), so the nuisances never
    # change how it looks: the video determines U up to pixel noise, as identification requires.
    alpha = _render(cx, cy, radius, np.ones_like(cx), h, w)  # [N, T, H, W] in (0, 1]
    video = alpha * amplitude[..., None, None] + (1.0 - alpha) * scene
    # Channels: per-video random colour mix of the same scene (C = 1 keeps the scene as is).
    mix = np.ones((n_samples, c)) if c == 1 else rng.uniform(0.5, 1.0, size=(n_samples, c))
    video = mix[:, :, None, None, None] * video[:, None]  # [N, C, T, H, W]
    video = video + pixel_noise * rng.normal(size=video.shape)

    # The hidden confounder has its own stream: drawing it changes none of the draws above or below.
    hidden = np.random.default_rng([seed, 1]).uniform(-1.0, 1.0, size=n_samples)  # [N]
    c = hidden_confounder_strength
    propensity = 1.0 / (1.0 + np.exp(-treatment_strength * (treatment_logit(u) + c * hidden)))  # [N]
    treatment = (rng.uniform(size=n_samples) < propensity).astype(np.float64)
    tau = ate + 0.5 * u[:, 4] if heterogeneous else np.full(n_samples, float(ate))
    outcome = baseline_outcome(u) + c * hidden + tau * treatment + noise_sd * rng.normal(size=n_samples)
    return VideoSample(
        videos=torch.from_numpy(video.astype(np.float32)),
        treatment=treatment,
        outcome=outcome,
        confounders=u,
        propensity=propensity,
        tau=tau,
        true_ate=float(ate),
        hidden=hidden,
    )


def write_simulated_videos(
    out_dir: str | Path,
    n_samples: int,
    dims: Sequence[int] = (1, 8, 16, 16),
    *,
    layout: str = "npy",
    chunk_size: int = 256,
    seed: int = 0,
    **sim_kwargs: Any,
) -> tuple[Path, Path]:
    """Simulate `n_samples` videos chunk by chunk and write them for `data=video_files`: returns (videos, table).

    `layout` "npy" writes one [N, C, T, H, W] float32 `videos.npy`; "folder" writes `videos/<row>.npy`, one
    [C, T, H, W] file per video. `table.csv` holds treatment, outcome and, for diagnostics, the true
    propensity, effect τ and confounders. Each chunk is an independent `simulate_videos` draw (its seed spawned
    from `seed`), so rows are i.i.d. and only one chunk is ever in memory.
    """
    if layout not in ("npy", "folder"):
        raise ValueError(f"layout must be 'npy' or 'folder', not {layout!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c, t, h, w = (int(x) for x in dims)
    starts = range(0, n_samples, chunk_size)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(starts))]
    videos_path = out_dir / ("videos.npy" if layout == "npy" else "videos")
    writer = NpyWriter(videos_path, (n_samples, c, t, h, w)) if layout == "npy" else None
    if writer is None:
        videos_path.mkdir(exist_ok=True)
    width = max(6, len(str(n_samples - 1)))  # zero-padded names sort in row order
    tables = []
    for start, chunk_seed in zip(starts, seeds, strict=True):
        s = simulate_videos(min(chunk_size, n_samples - start), (c, t, h, w), seed=chunk_seed, **sim_kwargs)
        if writer is not None:
            writer.write(s.videos.numpy())
        else:
            for i, video in enumerate(s.videos.numpy()):
                np.save(videos_path / f"{start + i:0{width}d}.npy", video)
        tables.append(
            pd.DataFrame(
                {"treatment": s.treatment, "outcome": s.outcome, "propensity": s.propensity, "tau": s.tau}
                | {f"u_{name}": s.confounders[:, j] for j, name in enumerate(CONFOUNDERS)}
            )
        )
    if writer is not None:
        writer.close()
    table_path = out_dir / "table.csv"
    pd.concat(tables, ignore_index=True).to_csv(table_path, index=False)
    return videos_path, table_path
