"""Video data for JEPA-DML: the confounded simulator and users' own videos, as LightningDataModules.

Both modules expose `sample()`, the whole data set as a `CausalSample` (what the cross-fitting task
consumes), and ordinary train/val/test loaders (what `task=fit model=jepa` consumes). Loaders use the
LightningModule's `mask_collator()` when it has one, so the JEPA's masks are drawn in collate.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from causal_engine.dml.data import CausalSample, DMLInputError, SampleRows
from causal_engine.dml.disk import open_videos
from causal_engine.dml.simulate import CONFOUNDERS, simulate_videos
from causal_engine.tables import load_table

# The keywords `VideoConfoundedDataModule` passes on to the simulator.
SIMULATOR_KEYS = frozenset(inspect.signature(simulate_videos).parameters)


class VideoDataModule(L.LightningDataModule):
    """Base: subclasses implement `_load()`; this class splits, batches and attaches the mask collator."""

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self._sample: CausalSample | None = None
        self._splits: dict[str, np.ndarray] = {}

    def _load(self) -> CausalSample:
        raise NotImplementedError

    def sample(self) -> CausalSample:
        """The whole data set (loaded once)."""
        if self._sample is None:
            self._sample = self._load()
        return self._sample

    def setup(self, stage: str | None = None) -> None:
        n = len(self.sample())
        perm = np.random.default_rng(self.split_seed).permutation(n)
        n_val, n_test = round(self.val_fraction * n), round(self.test_fraction * n)
        self._splits = {"val": perm[:n_val], "test": perm[n_val : n_val + n_test], "train": perm[n_val + n_test :]}

    def loader(self, rows: np.ndarray, *, shuffle: bool, collate_fn: Any = None) -> DataLoader:
        """A DataLoader over `rows` of the sample (used by the cross-fitting loop for fold subsets)."""
        return DataLoader(
            SampleRows(self.sample(), rows),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_fn,
            persistent_workers=self.num_workers > 0,
        )

    def _collate(self) -> Any:
        module = self.trainer.lightning_module if self.trainer is not None else None
        return module.mask_collator() if hasattr(module, "mask_collator") else None

    def train_dataloader(self) -> DataLoader:
        return self.loader(self._splits["train"], shuffle=True, collate_fn=self._collate())

    def val_dataloader(self) -> DataLoader:
        return self.loader(self._splits["val"], shuffle=False, collate_fn=self._collate())

    def test_dataloader(self) -> DataLoader:
        return self.loader(self._splits["test"], shuffle=False, collate_fn=self._collate())


class VideoConfoundedDataModule(VideoDataModule):
    """`data=video_confounded`: simulated confounded videos with a known ATE (see dml.simulate).

    The simulation's keywords (n_samples, dims, ate, heterogeneous, noise_sd, ..., seed) are those of
    `simulate_videos`, with its defaults; the others are the loaders' (`VideoDataModule`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{key: value for key, value in kwargs.items() if key not in SIMULATOR_KEYS})
        self.sim_kwargs = {key: value for key, value in kwargs.items() if key in SIMULATOR_KEYS}

    def _load(self) -> CausalSample:
        s = simulate_videos(**self.sim_kwargs)
        return CausalSample(s.videos, s.treatment, s.outcome, s.confounders, s.true_ate, confounder_names=CONFOUNDERS)


class VideoFilesDataModule(VideoDataModule):
    """`data=video_files`: a user's videos and a table with one row per video, in the same order.

    `videos` is an [N, C, T, H, W] .npy file or a folder of [C, T, H, W] .npy files (row i = the i-th file in
    name order). The videos stay on disk (`causal_engine.dml.disk`): batches are read as they are needed.
    """

    def __init__(self, videos: str, table: str, treatment: str, outcome: str, **loader_kwargs: Any) -> None:
        super().__init__(**loader_kwargs)
        self.videos_path, self.table_path = videos, table
        self.treatment_col, self.outcome_col = treatment, outcome

    def _load(self) -> CausalSample:
        videos = open_videos(self.videos_path)
        frame = load_table(self.table_path, columns=[self.treatment_col, self.outcome_col], name="data.table")
        if len(frame) != len(videos):
            raise DMLInputError(
                f"data.table has {len(frame)} rows but data.videos has {len(videos)} videos; "
                f"they must match one to one, in the same order."
            )
        return CausalSample(videos, frame[self.treatment_col].to_numpy(), frame[self.outcome_col].to_numpy())
