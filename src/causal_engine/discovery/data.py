"""The PFN's data: an endless stream of random SCMs for training, fixed seeded sets for validation and test.

The prior is an object (`causal_engine.scm.prior.BroadPrior` by default, `SeedPrior` for the seed notebook's
narrow prior) with `sample(batch, num_nodes, generator=..., num_obs=...)`. A training batch of `batch_size`
graphs is split into `size_groups` groups, each with its own node count drawn from the curriculum, and the
groups are padded together (`batch.collate`), so every batch mixes graph sizes and the masks are exercised all
the time; the groups of one batch share one observational row count (`prior.draw_num_obs`). The curriculum
widens the node-count range linearly from `curriculum_start` to `node_range` over `curriculum_batches` batches
of this rank's stream. Observational-only graphs are the prior's business (its `obs_only_share`).

Training batch k is drawn from its own generator, seeded by (seed, DDP rank, DataLoader worker, k)
(`causal_engine.seeding.stream_seed`): ranks see different graphs, and a run resumed from a checkpoint at
step k continues with exactly the batches an uninterrupted run would have drawn. Validation
and test sets are generated once, from `eval_seed` and the set's position in the configured `test_sets`
only, so they are the same on every rank and in every run with that eval_seed (42 in
conf/data/scm_prior.yaml, whatever the run's `seed`), and a set picked alone (`select_test_sets`, as
`task=compare` and the benchmarks do) has the graphs `experiment=pfn` tests on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from causal_engine.discovery.batch import DiscoveryBatch, collate, from_prior
from causal_engine.errors import UserError
from causal_engine.scm.prior import BroadPrior, SeedPrior
from causal_engine.seeding import stream_seed

Prior = BroadPrior | SeedPrior
_VAL_OFFSET, _TEST_OFFSET = 1_000, 2_000


def sample_graphs(
    num_graphs: int, num_nodes: int, prior: Prior, generator: torch.Generator, num_obs: int | None = None
) -> DiscoveryBatch:
    """`num_graphs` graphs of one size from the SCM prior, as a DiscoveryBatch."""
    return from_prior(prior.sample(num_graphs, num_nodes, generator=generator, num_obs=num_obs))


def curriculum_range(count: int, start: tuple[int, int], end: tuple[int, int], batches: int) -> tuple[int, int]:
    """Node-count range after `count` batches: linear from `start` to `end` over `batches`."""
    frac = min(1.0, count / max(1, batches))
    lo = round(start[0] + (end[0] - start[0]) * frac)
    hi = round(start[1] + (end[1] - start[1]) * frac)
    return lo, max(lo, hi)


def fixed_set(num_graphs: int, batch_size: int, num_nodes: int, prior: Prior, seed: int) -> list[DiscoveryBatch]:
    """A seeded, rank-independent list of batches of `num_nodes`-node graphs."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [min(batch_size, num_graphs - i) for i in range(0, num_graphs, batch_size)]
    return [sample_graphs(n, num_nodes, prior, generator) for n in sizes]


def set_prior(base: Prior, name: str, spec: Mapping[str, Any]) -> tuple[int, Prior]:
    """A fixed set's (num_nodes, prior): `spec` holds num_nodes, optionally its own `prior` object, and
    overrides of that prior's fields (e.g. `graph: sf` for the seed prior)."""
    spec = dict(spec)
    if "num_nodes" not in spec:
        raise UserError(f"data.{name} needs num_nodes (the fixed set's graph size)")
    d = int(spec.pop("num_nodes"))
    prior = spec.pop("prior", None) or base
    try:
        return d, dataclasses.replace(prior, **spec)
    except TypeError as err:
        fields = [f.name for f in dataclasses.fields(prior)]
        raise UserError(f"data.{name}: {err}; {type(prior).__name__} takes {fields}") from err


class PriorStream(IterableDataset):
    """Endless mixed-size batches from the SCM prior (yields whole batches: use DataLoader(batch_size=None))."""

    def __init__(
        self,
        prior: Prior,
        batch_size: int,
        size_groups: int,
        node_range: tuple[int, int],
        curriculum_start: tuple[int, int],
        curriculum_batches: int,
        seed: int,
        start: int = 0,
    ):
        self.prior, self.batch_size, self.size_groups = prior, batch_size, size_groups
        self.node_range, self.curriculum_start = tuple(node_range), tuple(curriculum_start)
        self.curriculum_batches, self.seed = curriculum_batches, seed
        self.start = start

    def __iter__(self) -> Iterator[DiscoveryBatch]:
        # Batch k is a pure function of (seed, rank, k): a run resumed at step k (self.start) sees exactly the
        # batches an uninterrupted run would have seen. Workers take every `workers`-th batch, round-robin,
        # which is the order the DataLoader reads them in.
        info = get_worker_info()
        workers, wid = (1, 0) if info is None else (info.num_workers, info.id)
        groups = min(self.size_groups, self.batch_size)
        sizes = [len(range(g, self.batch_size, groups)) for g in range(groups)]
        k = self.start + wid
        while True:
            generator = torch.Generator().manual_seed(stream_seed(self.seed, k))
            lo, hi = curriculum_range(k, self.curriculum_start, self.node_range, self.curriculum_batches)
            num_obs = self.prior.draw_num_obs(generator)
            parts = []
            for n in sizes:
                d = int(torch.randint(lo, hi + 1, (1,), generator=generator))
                parts.append(sample_graphs(n, d, self.prior, generator, num_obs))
            yield collate(parts)
            k += workers


class PFNDataModule(L.LightningDataModule):
    """Streams training graphs from the SCM prior; fixed validation and named test sets.

    Args:
        prior: the SCM prior (`scm.prior.BroadPrior` or `scm.prior.SeedPrior`), default BroadPrior().
        batch_size: graphs per training batch; size_groups: node counts per batch (padded together).
        node_range, curriculum_start, curriculum_batches: the node-count curriculum (see module docstring).
        val_set / test_sets: num_nodes, optionally a `prior` of their own, and overrides of the prior's fields
            (see `set_prior`); the test sets are separate dataloaders logged as test/<name>/<metric>.
        val_graphs, test_graphs, eval_batch_size: sizes of the fixed sets.
        seed: the training stream's seed; eval_seed: the fixed sets' (None: seed). A fixed eval_seed gives runs
            with different training seeds, and fine-tuning stages, the same validation and test graphs.
        The training stream is endless: the trainer's `max_steps` and `val_check_interval` (in batches) bound it.
    """

    def __init__(
        self,
        prior: Prior | None = None,
        batch_size: int = 8,
        size_groups: int = 2,
        node_range: tuple[int, int] = (10, 30),
        curriculum_start: tuple[int, int] = (5, 10),
        curriculum_batches: int = 2000,
        val_set: Mapping[str, Any] | None = None,
        test_sets: Mapping[str, Mapping[str, Any]] | None = None,
        val_graphs: int = 32,
        test_graphs: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        eval_seed: int | None = 42,
    ):
        super().__init__()
        self.prior = prior or BroadPrior()
        self.batch_size, self.size_groups, self.num_workers, self.seed = batch_size, size_groups, num_workers, seed
        self.eval_seed = seed if eval_seed is None else eval_seed
        self.node_range, self.curriculum_start = tuple(node_range), tuple(curriculum_start)
        self.curriculum_batches = curriculum_batches
        self.val_spec = dict(val_set or {"num_nodes": 20})
        self.test_specs = {k: dict(v) for k, v in (test_sets or {"er_d20": {"num_nodes": 20}}).items()}
        self._test_seeds = {name: self.eval_seed + _TEST_OFFSET + i for i, name in enumerate(self.test_specs)}
        for name, spec in [("val_set", self.val_spec), *((f"test_sets.{k}", v) for k, v in self.test_specs.items())]:
            set_prior(self.prior, name, spec)  # bad specs fail here, before any sampling
        self.val_graphs, self.test_graphs, self.eval_batch_size = val_graphs, test_graphs, eval_batch_size
        self.val_batches: list[DiscoveryBatch] | None = None
        self.test_batches: dict[str, list[DiscoveryBatch]] | None = None

    @property
    def test_names(self) -> list[str]:
        return list(self.test_specs)

    def select_test_sets(self, names: Sequence[str], field: str = "sets") -> None:
        """Test on `names` only, in that order; each keeps the graphs of its place in the configured test_sets.
        `field` names the setting the names came from, for the error."""
        unknown = [name for name in names if name not in self.test_specs]
        if unknown:
            raise UserError(f"{field}: unknown test set(s) {unknown}; data.test_sets has {self.test_names}.")
        self.test_specs = {name: self.test_specs[name] for name in names}
        self.test_batches = None

    def _fixed(self, spec: Mapping[str, Any], graphs: int, seed: int) -> list[DiscoveryBatch]:
        d, prior = set_prior(self.prior, "test_sets", spec)
        return fixed_set(graphs, self.eval_batch_size, d, prior, seed)

    def setup(self, stage: str | None = None) -> None:
        # fast_dev_run evaluates one batch per loader: generate only that batch of each fixed set.
        quick = bool(self.trainer is not None and self.trainer.fast_dev_run)
        val_graphs = min(self.val_graphs, self.eval_batch_size) if quick else self.val_graphs
        test_graphs = min(self.test_graphs, self.eval_batch_size) if quick else self.test_graphs
        if stage in ("fit", "validate", None) and self.val_batches is None:
            self.val_batches = self._fixed(self.val_spec, val_graphs, self.eval_seed + _VAL_OFFSET)
        if stage in ("test", None) and self.test_batches is None:
            self.test_batches = {
                name: self._fixed(spec, test_graphs, self._test_seeds[name]) for name, spec in self.test_specs.items()
            }

    def train_dataloader(self) -> DataLoader:
        stream = PriorStream(
            self.prior,
            self.batch_size,
            self.size_groups,
            self.node_range,
            self.curriculum_start,
            self.curriculum_batches,
            self.seed,
            # A resumed run (ckpt_path=...) continues the stream at the restored step.
            start=self.trainer.global_step if self.trainer is not None else 0,
        )
        return DataLoader(
            stream, batch_size=None, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_batches, batch_size=None)

    def test_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.test_batches[name], batch_size=None) for name in self.test_names]
