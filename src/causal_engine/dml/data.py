"""The DML data contract: one observational data set (`CausalSample`), its checks, and row-indexed items.

Every DML data source (the video DataModules, a user's table, the shipped examples) ends as a `CausalSample`;
the fold loop and the scores see nothing else. Videos may stay on disk (`causal_engine.dml.disk.DiskVideos`):
everything here reads features in batches of rows (`row_batches`), never the whole array at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import Dataset

from causal_engine.dml.disk import DiskVideos
from causal_engine.errors import UserError
from causal_engine.tables import TableSource

# Rows per batch when the contract's checks stream through the features (64 videos of 3×16×64×64 are 50 MB).
CHECK_ROWS = 64


class DMLInputError(UserError):
    """Data that DML cannot use as given (non-binary treatment, NaN, mismatched lengths, ...)."""


@dataclass(frozen=True)
class CausalSample:
    """One observational data set: features (videos or covariates), treatment (binary, or continuous for the
    PLR score), outcome.

    `confounders` (named by `confounder_names`) and `true_ate` are known only in simulation and used only for
    diagnostics and the oracle representation.
    """

    features: torch.Tensor | DiskVideos  # [N, C, T, H, W] videos (in memory or on disk), or [N, p] covariates
    treatment: np.ndarray  # [N] in {0, 1} (any real value for the PLR score)
    outcome: np.ndarray  # [N]
    confounders: np.ndarray | None = None  # [N, k]
    true_ate: float | None = None
    feature_names: tuple[str, ...] = ()
    confounder_names: tuple[str, ...] = ()

    @property
    def is_video(self) -> bool:
        return self.features.dim() == 5

    @property
    def binary_treatment(self) -> bool:
        return bool(np.isin(self.treatment, (0.0, 1.0)).all())

    def __len__(self) -> int:
        return len(self.outcome)


def row_batches(
    features: torch.Tensor | DiskVideos, rows: np.ndarray, batch_size: int
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(rows [b], features[rows] [b, ...]) for consecutive batches of `rows`: only one batch is ever read."""
    rows = np.asarray(rows)
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        yield batch, features[torch.as_tensor(batch)]


def check_sample(sample: CausalSample, *, k_folds: int = 2, score: str = "ate", source: str = "data") -> None:
    """Reject data DML cannot use, naming the field and the fix; called before any model is fit.

    `ate` and `att` need a binary treatment with both arms in every fold; `plr` also takes a continuous one."""
    n = len(sample.features)
    for name, values in (("treatment", sample.treatment), ("outcome", sample.outcome)):
        if len(values) != n:
            raise DMLInputError(
                f"{source}: {name} has {len(values)} rows but there are {n} feature rows "
                f"(videos/covariates); give one {name} value per row."
            )
        bad = ~np.isfinite(values)
        if bad.any():
            raise DMLInputError(
                f"{source}: {name} has {int(bad.sum())} NaN/inf value(s), first at row "
                f"{int(np.flatnonzero(bad)[0])}; fill or remove those rows first."
            )
    for rows, batch in row_batches(sample.features, np.arange(n), CHECK_ROWS):
        finite = torch.isfinite(batch.reshape(len(rows), -1)).all(1)  # [b]
        if not finite.all():
            row = int(rows[int(torch.nonzero(~finite)[0, 0])])
            raise DMLInputError(f"{source}: the features contain NaN/inf (first at row {row}); clean them first.")
    levels = np.unique(sample.treatment)
    if not np.all(np.isin(levels, (0.0, 1.0))):
        if score == "plr":  # a continuous treatment: partialling out needs only its variation
            if len(levels) < 2:
                raise DMLInputError(f"{source}: the treatment is constant ({levels[0]:g}); it has no effect to find.")
            return
        shown = ", ".join(f"{v:g}" for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
        raise DMLInputError(
            f"{source}: dml.score={score} needs a binary 0/1 treatment, but it takes the values {{{shown}}}; "
            f"recode it (e.g. treated = 1, control = 0), or use dml.score=plr for a continuous treatment."
        )
    for arm in (0, 1):
        count = int(np.sum(sample.treatment == arm))
        if count < k_folds:
            raise DMLInputError(
                f"{source}: the {'treated' if arm else 'control'} arm has {count} row(s), fewer "
                f"than dml.k_folds={k_folds}; every fold needs both arms. Lower dml.k_folds or "
                f"add data."
            )


class SampleRows(Dataset):
    """Items of a CausalSample restricted to `rows` (global indices, reported in each item)."""

    def __init__(self, sample: CausalSample, rows: np.ndarray) -> None:
        self.sample, self.rows = sample, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = int(self.rows[i])
        item = {
            "video": self.sample.features[r],
            "treatment": torch.tensor(self.sample.treatment[r], dtype=torch.float32),
            "outcome": torch.tensor(self.sample.outcome[r], dtype=torch.float32),
            "row": r,
        }
        if self.sample.confounders is not None:
            item["confounders"] = torch.as_tensor(self.sample.confounders[r], dtype=torch.float32)
        return item


def load_sample(data_cfg: DictConfig) -> CausalSample:
    """The configured data as a CausalSample: anything with `sample()` (the video DataModules, shipped
    examples), or a user's table (`data=table`)."""
    data = instantiate(data_cfg)
    if hasattr(data, "sample"):
        return data.sample()
    if isinstance(data, TableSource):
        missing = [k for k in ("treatment", "outcome", "covariates") if not getattr(data, k)]
        if missing:
            # Confounders are a causal choice (a mediator or a collider among them biases the estimate), so
            # they are never defaulted to "every other column"; the message offers the columns to choose from.
            names = data.columns()
            shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
            raise DMLInputError(
                f"task=crossfit with data=table needs data.{', data.'.join(missing)}: e.g. "
                f"`data.treatment=qsmk data.outcome=wt82_71 data.covariates=[age,sex]`; the table's columns: "
                f"{shown}. Covariates are the confounders to adjust for: pre-treatment causes of the "
                f"treatment or the outcome, never a mediator or a consequence of either."
            )
        covariates = list(data.covariates)
        clash = {data.treatment, data.outcome} & set(covariates)
        if clash:
            raise DMLInputError(f"data.covariates must not contain the treatment or outcome ({sorted(clash)}).")
        frame = data.load([data.treatment, data.outcome, *covariates])
        return CausalSample(
            torch.tensor(frame[covariates].to_numpy(), dtype=torch.float32),
            frame[data.treatment].to_numpy(),
            frame[data.outcome].to_numpy(),
            feature_names=tuple(covariates),
        )
    raise DMLInputError(
        f"task=crossfit cannot use data of type {type(data).__name__}; use data=video_confounded, "
        f"data=video_files or data=table."
    )


# What the nuisances see (`dml.representation`): the data's own features (videos through the representation
# model, covariates as given), the raw pixels flattened, or the simulator's true confounders (the oracle).
REPRESENTATIONS = ("features", "pixels", "oracle")


def with_representation(sample: CausalSample, representation: str) -> CausalSample:
    """`sample` with its features swapped for the chosen representation; the comparisons of a sweep
    (`experiment=jepa_dml_compare`) differ only in this."""
    if representation == "features":
        return sample
    if representation == "pixels":
        if not sample.is_video or not isinstance(sample.features, torch.Tensor):
            raise DMLInputError(
                "dml.representation=pixels flattens videos held in memory; this data has none (use features)."
            )
        return replace(sample, features=sample.features.reshape(len(sample), -1))  # [N, C·T·H·W]
    if representation == "oracle":
        if sample.confounders is None:
            raise DMLInputError(
                "dml.representation=oracle needs the true confounders, which only the simulator knows "
                "(data=video_confounded)."
            )
        # Named as the simulator names them, so analyses can name a true confounder (benchmark=[brightness]).
        features = torch.as_tensor(sample.confounders, dtype=torch.float32)  # [N, k]
        return replace(sample, features=features, feature_names=sample.confounder_names)
    raise DMLInputError(f"dml.representation={representation!r}: choose one of {list(REPRESENTATIONS)}.")
