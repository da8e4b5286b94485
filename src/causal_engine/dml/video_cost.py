"""Peak memory and time of one JEPA-DML fold on videos that stay on disk (`data=video_files`), at real sizes.

`measure_video_fold` runs the first fold's steps exactly as the loop does (`causal_engine.dml.fold`): load and
check the sample (streaming), fit the JEPA, embed every row, fit the nuisances, predict the held-out rows. The
JEPA's epoch is cut to `train_batches` batches (validation cut in the same proportion) and its time scaled up
to a full epoch; that scaling also multiplies the fit's fixed start-up cost, so the extrapolated time is an
upper bound. Memory needs no extrapolation: an epoch's peak is reached within its first batches (each batch
has the same shapes and nothing accumulates across batches), and embedding and the nuisances run on all rows.
Peak memory is the process's peak resident set (VmHWM) per step and over all of them, imported libraries
included. Times are wall and CPU seconds: on a shared machine the wall clock also counts other processes' turns.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, open_dict

from causal_engine.dml.data import check_sample, load_sample
from causal_engine.dml.fold import embed_rows, fit_jepa, fit_networks, fold_seed, inner_split
from causal_engine.dml.folds import stratified_folds
from causal_engine.profiling import reset_peak_rss, rss_mb

T = TypeVar("T")


def _step(call: Callable[[], T], costs: dict[str, dict[str, float]], name: str) -> T:
    """`call()`, recording its wall and CPU seconds (the machine may be shared: CPU time is this process's own)
    and the peak RSS reached during it (MB, absolute)."""
    reset_peak_rss()
    wall, cpu = time.perf_counter(), time.process_time()
    out = call()
    costs[name] = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": rss_mb("VmHWM"),
    }
    return out


def measure_video_fold(cfg: DictConfig, train_batches: int) -> dict[str, Any]:
    """Cost of each step (wall s, CPU s, peak RSS MB), the extrapolated seconds per fold and the overall peak RSS
    of one fold on `cfg.data`."""
    dml = cfg.dml
    baseline_mb = reset_peak_rss()
    costs: dict[str, dict[str, float]] = {}

    def load():
        sample = load_sample(cfg.data)
        check_sample(sample, k_folds=dml.k_folds)
        return sample

    sample = _step(load, costs, "load_and_check")
    n = len(sample)
    fold = stratified_folds(sample.treatment, dml.k_folds, n_rep=1, seed=dml.split_seed)[0][0]
    seed = fold_seed(cfg.seed, fold, dml.k_folds)
    L.seed_everything(seed, workers=True, verbose=False)
    fit_rows, val_rows = inner_split(fold, seed, dml.val_fraction)

    # One JEPA epoch cut to `train_batches` batches; validation keeps the epoch's train/val proportion.
    full_train, full_val = (math.ceil(len(rows) / dml.jepa_batch_size) for rows in (fit_rows, val_rows))
    scale = full_train / min(train_batches, full_train)
    cut = copy.deepcopy(cfg)
    with open_dict(cut):
        cut.trainer.limit_train_batches = min(train_batches, full_train)
        cut.trainer.limit_val_batches = max(1, math.ceil(full_val / scale))
        cut.trainer.num_sanity_val_steps = 0
        cut.dml.jepa_epochs = 1
    jepa, _ = _step(lambda: fit_jepa(cut, sample, fit_rows, val_rows, seed, "bench/jepa"), costs, "jepa_cut_epoch")
    features = _step(
        lambda: torch.from_numpy(embed_rows(jepa, sample.features, np.arange(n), dml.jepa_batch_size)).float(),
        costs,
        "embed_all_rows",
    )  # [N, D']
    # The networks stop on their held-out loss and predict the held-out fold in the same step.
    _step(lambda: fit_networks(cfg, sample, features, fold, fit_rows, val_rows, "bench"), costs, "nuisances")

    def per_fold(clock: str) -> float:
        """The fold's seconds: `dml.jepa_epochs` extrapolated JEPA epochs, then embedding, nuisances, prediction."""
        jepa_epoch = costs["jepa_cut_epoch"][clock] * scale
        rest = sum(costs[step][clock] for step in ("embed_all_rows", "nuisances"))
        return dml.jepa_epochs * jepa_epoch + rest

    tubelet = cfg.model.tubelet
    return {
        "n": n,
        "video_shape": list(sample.features.shape[1:]),
        "tokens_per_clip": int(np.prod([s // t for s, t in zip(sample.features.shape[2:], tubelet, strict=True)])),
        "features_dim": int(features.shape[1]),
        "jepa_batch_size": int(dml.jepa_batch_size),
        "jepa_batches_run": int(cut.trainer.limit_train_batches),
        "jepa_batches_per_epoch": full_train,
        "jepa_epochs": int(dml.jepa_epochs),
        "steps": costs,
        "jepa_epoch_cpu_s": costs["jepa_cut_epoch"]["cpu_s"] * scale,
        "jepa_epoch_wall_s": costs["jepa_cut_epoch"]["wall_s"] * scale,
        "fold_cpu_s": per_fold("cpu_s"),
        "fold_wall_s": per_fold("wall_s"),
        "baseline_rss_mb": baseline_mb,
        "peak_rss_mb": max(step["peak_rss_mb"] for step in costs.values()),
    }
