"""The cross-fitting fold plan: K folds (stratified by a binary treatment), R repetitions, its own seed.

Stratifying by treatment keeps both arms in every training fold, so each fold's outcome head per arm
and its propensity model always see both arms in roughly the sample's proportion. A continuous
treatment (the PLR score) has no arms: its rows are dealt as one stratum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    """One cross-fitting fold: models fit on `train` and predict `test` (disjoint, covering all rows)."""

    rep: int
    k: int
    train: np.ndarray  # [n_train] row indices, sorted
    test: np.ndarray  # [n_test] row indices, sorted


def stratified_folds(d: np.ndarray, k_folds: int, *, n_rep: int = 1, seed: int = 0) -> list[list[Fold]]:
    """`n_rep` independent K-fold partitions of the rows, each stratified by `d` when it is binary 0/1.

    Within each arm (or among all rows, for a non-binary `d`) the rows are shuffled by a generator seeded
    from (seed, rep) and dealt round-robin to the folds, so fold sizes per arm differ by at most one.
    """
    d = np.asarray(d)
    n = d.shape[0]
    binary = bool(np.isin(d, (0, 1)).all())
    strata = [np.flatnonzero(d == arm) for arm in (0, 1)] if binary else [np.arange(n)]
    plan = []
    for rep in range(n_rep):
        rng = np.random.default_rng([seed, rep])
        fold_of = np.full(n, -1, dtype=np.int64)  # [n]
        offset = 0
        for stratum in strata:
            idx = rng.permutation(stratum)
            # continue the round-robin across arms so that small arms don't all start at fold 0
            fold_of[idx] = (np.arange(idx.shape[0]) + offset) % k_folds
            offset += idx.shape[0]
        rows = np.arange(n)
        plan.append([Fold(rep, k, train=rows[fold_of != k], test=rows[fold_of == k]) for k in range(k_folds)])
    return plan
