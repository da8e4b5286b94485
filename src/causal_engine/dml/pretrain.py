"""`dml.pretrain=once`: one JEPA pre-trained on every video without treatment or outcome, frozen for all folds.

Per-fold training (`dml.pretrain=per_fold`, the default) keeps each held-out fold out of every model that
predicts it. Pre-training once on all videos lets the held-out videos shape the representation, but never their
labels: the JEPA is given zeros for treatment and outcome, so the representation φ is a function of X alone,
learnt from the marginal distribution of X. Conditional on φ, the nuisances are fit on training folds only and
evaluated out of fold as for any pre-specified feature map, so the orthogonal score's cross-fitting argument
holds unchanged; what matters is that φ is estimated without (D, Y) (Schulte, Rügamer & Nagler, ICML 2025, on
pre-trained representations in DML). It costs one JEPA fit instead of K·R.

The embeddings are saved under the run directory (`pretrain/features.npz`, with the fold store's fingerprint),
so a resumed run reuses them and its saved folds stay consistent with the representation they were fit on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from causal_engine.dml.data import CausalSample, DMLInputError
from causal_engine.dml.ddp import barrier, gather_by_index
from causal_engine.dml.fold import embed_rows, fit_jepa

log = logging.getLogger(__name__)


def pretrained_sample(cfg: DictConfig, sample: CausalSample, fingerprint: str) -> CausalSample:
    """`sample` with its videos replaced by the frozen JEPA's embeddings [N, D'] (label-free, fit once)."""
    if not sample.is_video:
        raise DMLInputError(
            "dml.pretrain=once pre-trains a representation of videos; this data has covariates (or "
            "dml.representation is pixels/oracle). Use dml.pretrain=per_fold."
        )
    path = Path(cfg.paths.output_dir) / "pretrain" / "features.npz"
    if path.is_file():
        with np.load(path) as saved:
            if str(saved["fingerprint"]) == fingerprint:
                log.info("dml.pretrain=once: reusing %s", path)
                return _embedded(sample, saved["features"])
    n = len(sample)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    perm = np.random.default_rng(cfg.seed).permutation(n)
    n_val = max(1, round(cfg.dml.val_fraction * n))
    unlabelled = replace(sample, treatment=np.zeros(n), outcome=np.zeros(n))  # the JEPA cannot see labels
    jepa, _ = fit_jepa(
        cfg, unlabelled, np.sort(perm[n_val:]), np.sort(perm[:n_val]), seed=int(cfg.seed), subdir="pretrain/jepa"
    )
    batch = cfg.dml.jepa_batch_size
    features = gather_by_index(np.arange(n), lambda rows: embed_rows(jepa, sample.features, rows, batch))
    features = np.ascontiguousarray(features, dtype=np.float32)  # [N, D']
    _save(path, features, fingerprint)
    barrier()
    return _embedded(sample, features)


def _embedded(sample: CausalSample, features: np.ndarray) -> CausalSample:
    """The sample on its embeddings [N, D'], named z0 … z{D'-1} so that analyses can name representation
    features (`dml.sensitivity.benchmark=[z0,z1]`, `dml.blp.covariates=[z3]`)."""
    names = tuple(f"z{j}" for j in range(features.shape[1]))
    return replace(sample, features=torch.from_numpy(features).float(), feature_names=names)  # [N, D'] float32


@rank_zero_only
def _save(path: Path, features: np.ndarray, fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=features, fingerprint=np.array(fingerprint))
    tmp.replace(path)
