"""DataModules for causal fine-tuning: rows (observational and interventional) plus the graph they follow.

A batch is (x [B, D], cut [B, D] bool, x_cf [B, D], has_cf [B] bool): the variables, which of them were
set by a hard intervention in that row, and (simulation only) the row's exact counterfactual under
do(X := X + cf_shift) with a flag saying whether that label exists. Validation is observational only, so
early stopping never sees interventional data.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from causal_engine.errors import UserError
from causal_engine.intervene.zoo import ZooSCM, get_scm


@dataclass
class GraphInfo:
    """What a network needs to know about the variables: names, adjacency (i -> j), treatment, outcome."""

    names: list[str]
    adjacency: np.ndarray
    treatment: int
    outcome: int


@dataclass
class Truth:
    """The simulator's exact answers on the test reference rows, for scoring.

    Two do-response truths: the population curve E[Y | do(X = v)] (for figures and `*_pop` metrics) and the
    reference rows' own exact curve, the mean over rows of Y_i under do(X = v) with row i's exogenous noise.
    A model answers by averaging over those same rows' (abducted) noise, so only the rows' curve gives a
    perfect model zero error on a finite reference set; against the population curve every model shares
    the rows' sampling error (SD of Y's noise part / √n_test) as a floor.
    """

    grid: Tensor  # [V] treatment values (5–95 % quantiles of X)
    do_mean: Tensor  # [V] population E[Y | do(X = v)]
    do_se: Tensor  # [V] its Monte Carlo standard error (0 when analytic)
    rows_do_mean: Tensor  # [V] mean over the test rows of Y_i under do(X = v) with row i's own noise
    val_rows_do_mean: Tensor  # [V] the same over the validation rows (for `val/do_rmse`)
    mmd_value: float  # the treatment value of the MMD query (the grid's median)
    do_samples: Tensor  # [M, D] samples under do(X = mmd_value)
    x_cf: Tensor  # [N_test, D] counterfactuals of the test rows under do(X := X + cf_shift)


def _batch(x: Tensor, cut: Tensor | None = None, x_cf: Tensor | None = None, has_cf: Tensor | None = None):
    n = len(x)
    cut = torch.zeros_like(x, dtype=torch.bool) if cut is None else cut
    x_cf = torch.zeros_like(x) if x_cf is None else x_cf
    has_cf = torch.zeros(n, dtype=torch.bool) if has_cf is None else has_cf
    return TensorDataset(x.float(), cut, x_cf.float(), has_cf)


class InterveneDataModule(L.LightningDataModule):
    """Base: holds train/val/test tensors and the graph; subclasses fill them in `setup`."""

    def __init__(self, batch_size: int = 128, num_workers: int = 0, cf_shift: float = 1.0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cf_shift = cf_shift
        self.graph: GraphInfo | None = None
        self.truth: Truth | None = None
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None
        # Interventional rows held out of a fit (task=finetune's stage), scored as `val/do_loss`; None: no such rows.
        self.val_do_set: TensorDataset | None = None

    @property
    def train_x(self) -> Tensor:
        return self.train_set.tensors[0]

    @property
    def val_x(self) -> Tensor:
        return self.val_set.tensors[0]

    @property
    def test_x(self) -> Tensor:
        return self.test_set.tensors[0]

    def scaler(self) -> tuple[Tensor, Tensor]:
        """Per-variable mean and SD of the observational training rows (interventional values excluded)."""
        x, cut = self.train_set.tensors[0], self.train_set.tensors[1]
        keep = (~cut).float()
        count = keep.sum(0).clamp_min(1)
        loc = (x * keep).sum(0) / count
        scale = (((x - loc) ** 2 * keep).sum(0) / count).sqrt()
        return loc, scale

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=min(self.batch_size, len(dataset)), shuffle=shuffle, num_workers=self.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class ZooDataModule(InterveneDataModule):
    """Training rows from a zoo SCM: `n_train` rows, of which `interventional_fraction` are do(X = v) rows
    (v drawn from X's observational marginal, or the fixed `intervention_value`), and a
    `counterfactual_fraction` of the observational rows carry exact counterfactual labels.

    Datasets are fixed per `seed` (train, validation and test draws use seed offsets 0, 1, 2), so every
    model of a comparison sees the same rows.
    """

    def __init__(
        self,
        scm: str,
        n_train: int = 1000,
        interventional_fraction: float = 0.0,
        intervention_value: float | None = None,
        counterfactual_fraction: float = 0.0,
        n_val: int | None = None,
        n_test: int = 2000,
        n_quantiles: int = 9,
        n_mmd: int = 1000,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        cf_shift: float = 1.0,
    ) -> None:
        super().__init__(batch_size, num_workers, cf_shift)
        for key, value in (
            ("interventional_fraction", interventional_fraction),
            ("counterfactual_fraction", counterfactual_fraction),
        ):
            if not 0.0 <= value <= 1.0:
                raise UserError(f"data.{key} must be in [0, 1], got {value}")
        self.scm: ZooSCM = get_scm(scm)
        self.n_train = n_train
        self.interventional_fraction = interventional_fraction
        self.intervention_value = intervention_value
        self.counterfactual_fraction = counterfactual_fraction
        self.n_val = n_val if n_val is not None else max(64, n_train // 4)
        self.n_test = n_test
        self.n_quantiles = n_quantiles
        self.n_mmd = n_mmd
        self.seed = seed
        scm_ = self.scm
        self.graph = GraphInfo(scm_.names, scm_.adjacency, scm_.treatment, scm_.outcome)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        scm, t = self.scm, self.scm.treatment
        gen = torch.Generator().manual_seed(self.seed)
        n_int = round(self.n_train * self.interventional_fraction)
        n_obs = self.n_train - n_int
        x_obs = scm.sample(n_obs, gen)
        if self.intervention_value is None:  # a randomised experiment: X drawn from its own marginal
            values = scm.sample(n_int, gen)[:, t]
        else:
            values = torch.full((n_int,), float(self.intervention_value), dtype=torch.float64)
        x_int = scm.sample(n_int, gen, {t: values})
        x = torch.cat([x_obs, x_int])
        cut = torch.zeros(self.n_train, scm.num_nodes, dtype=torch.bool)
        cut[n_obs:, t] = True
        n_cf = round(n_obs * self.counterfactual_fraction)
        x_cf = torch.zeros_like(x)
        x_cf[:n_cf] = scm.counterfactual(x_obs[:n_cf], {t: {"shift": self.cf_shift}})
        has_cf = torch.zeros(self.n_train, dtype=torch.bool)
        has_cf[:n_cf] = True
        self.train_set = _batch(x, cut, x_cf, has_cf)
        x_val = scm.sample(self.n_val, torch.Generator().manual_seed(self.seed + 1))
        self.val_set = _batch(x_val)
        x_test = scm.sample(self.n_test, torch.Generator().manual_seed(self.seed + 2))
        self.test_set = _batch(x_test)
        grid = scm.treatment_grid(self.n_quantiles)
        mean, se = scm.do_mean(grid)
        mmd_value = float(grid[len(grid) // 2])
        do_samples = scm.sample(self.n_mmd, torch.Generator().manual_seed(self.seed + 3), {t: mmd_value})
        x_cf_test = scm.counterfactual(x_test, {t: {"shift": self.cf_shift}})
        # From the float64 rows, before the float32 cast the models see.
        rows_mean, val_rows_mean = scm.do_mean_on_rows(x_test, grid), scm.do_mean_on_rows(x_val, grid)
        self.truth = Truth(
            grid=grid.float(),
            do_mean=mean.float(),
            do_se=se.float(),
            rows_do_mean=rows_mean.float(),
            val_rows_do_mean=val_rows_mean.float(),
            mmd_value=mmd_value,
            do_samples=do_samples.float(),
            x_cf=x_cf_test.float(),
        )


class ArrayDataModule(InterveneDataModule):
    """A user's table already loaded: rows x [N, D] and, optionally, which entries a hard intervention set
    (cut [N, D] bool, from a regime column). Validation takes a share of the observational rows only;
    every interventional row trains."""

    def __init__(
        self,
        x: Tensor,
        graph: GraphInfo,
        cut: Tensor | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.graph = graph
        cut = torch.zeros_like(x, dtype=torch.bool) if cut is None else cut
        observational = (~cut.any(1)).nonzero().flatten()
        if len(observational) < 2:
            raise UserError("the table needs at least 2 observational rows (empty regime) for validation")
        perm = observational[torch.randperm(len(observational), generator=torch.Generator().manual_seed(seed))]
        n_val = max(1, round(len(perm) * val_fraction))
        val_rows = perm[:n_val]
        train = torch.ones(len(x), dtype=torch.bool)
        train[val_rows] = False
        self.train_rows = train.nonzero().flatten()  # [N_train] the table rows fitted, in table order
        self.train_set = _batch(x[train], cut[train])
        self.val_set = _batch(x[val_rows])
        self.test_set = self.val_set
