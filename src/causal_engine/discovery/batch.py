"""The PFN's input: one or more graphs' samples, padded to a common node count with a node mask.

`scm.sample_batch` returns graphs of one size per call; the curriculum mixes sizes inside a batch, and a
user's table has its own size and regime layout. `DiscoveryBatch` is the one format all of them meet in:
every node-indexed tensor is padded to `d = max size` and `node_mask` says which nodes are real. The
masks drive the attention (padded keys are never attended), the loss, the acyclicity term and the
metrics, so a padded batch gives the same numbers as its graphs one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from torch.nn import functional as F

from causal_engine.scm import PriorBatch


@dataclass
class DiscoveryBatch:
    """Samples, regimes and queries of B graphs (padded to d nodes, R regimes).

    adjacency[b, i, j] = 1 iff i -> j. Deltas are in the variables' own units (standardisation happens in
    the encoder so that training and a user's table go through the same code).
    """

    observational: Tensor  # [B, S_obs, d]
    interventional: Tensor  # [B, R, S_int, d]
    int_sample_mask: Tensor  # [B, R, S_int] bool: real interventional rows
    regime_targets: Tensor  # [B, R, d] bool
    regime_values: Tensor  # [B, R, d]
    regime_mask: Tensor  # [B, R] bool: False for padding regimes
    query: Tensor  # [B, Q, d] factual rows
    query_targets: Tensor  # [B, Q, d] bool
    query_values: Tensor  # [B, Q, d]
    node_mask: Tensor  # [B, d] bool: False for padding nodes
    adjacency: Tensor | None = None  # [B, d, d] {0, 1}; None for a user's table without a graph
    delta: Tensor | None = None  # [B, Q, d] counterfactual change; None when unknown

    @property
    def num_graphs(self) -> int:
        return self.observational.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.observational.shape[-1]

    def to(self, device: torch.device | str) -> DiscoveryBatch:
        return replace(self, **{f.name: _to(getattr(self, f.name), device) for f in fields(self)})

    def permute_nodes(self, perm: Tensor) -> DiscoveryBatch:
        """The same graphs with node k renamed perm[k] -> k (used to test permutation equivariance)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in ("int_sample_mask", "regime_mask"):
                out[f.name] = value
            elif f.name == "adjacency":
                out[f.name] = value[:, perm][:, :, perm]
            else:
                out[f.name] = value[..., perm]
        return DiscoveryBatch(**out)

    def drop_interventions(self, which: Tensor) -> DiscoveryBatch:
        """Hide all interventional regimes of the graphs where `which` [B] is True (observational-only data)."""
        return replace(self, regime_mask=self.regime_mask & ~which[:, None])


def _to(value: Tensor | None, device: torch.device | str) -> Tensor | None:
    return None if value is None else value.to(device)


def from_prior(prior: PriorBatch) -> DiscoveryBatch:
    """Wrap a `causal_engine.scm.PriorBatch` (one node count, no padding) as a DiscoveryBatch."""
    b, r, s_int, d = prior.interventional.shape
    device = prior.observational.device
    return DiscoveryBatch(
        observational=prior.observational.float(),
        interventional=prior.interventional.float(),
        int_sample_mask=prior.regime_mask[:, :, None].expand(b, r, s_int).clone(),
        regime_targets=prior.regime_targets.bool(),
        regime_values=prior.regime_values.float(),
        regime_mask=prior.regime_mask.bool(),
        query=prior.query.float(),
        query_targets=prior.query_targets.bool(),
        query_values=prior.query_values.float(),
        node_mask=torch.ones(b, d, dtype=torch.bool, device=device),
        adjacency=prior.adjacency.float(),
        delta=prior.delta.float(),
    )


def _pad(value: Tensor, sizes: Sequence[int]) -> Tensor:
    """Zero-pad `value` at the end of each dimension to `sizes` (one entry per dimension)."""
    pad: list[int] = []
    for dim in reversed(range(value.dim())):
        pad += [0, sizes[dim] - value.shape[dim]]
    return F.pad(value, pad)


def collate(batches: Sequence[DiscoveryBatch]) -> DiscoveryBatch:
    """Concatenate batches of different node counts, regime counts and sample counts, padding with masks."""
    if len(batches) == 1:
        return batches[0]
    d = max(b.num_nodes for b in batches)
    r = max(b.interventional.shape[1] for b in batches)
    s_int = max(b.interventional.shape[2] for b in batches)
    s_obs = {b.observational.shape[1] for b in batches}
    q = {b.query.shape[1] for b in batches}
    if len(s_obs) > 1 or len(q) > 1:
        raise ValueError(f"collate needs one observational sample count and one query count, got {s_obs}, {q}")
    out = {}
    for f in fields(DiscoveryBatch):
        values = [getattr(b, f.name) for b in batches]
        if any(v is None for v in values):
            out[f.name] = None
            continue
        target = {
            "observational": lambda v: (v.shape[0], v.shape[1], d),
            "interventional": lambda v: (v.shape[0], r, s_int, d),
            "int_sample_mask": lambda v: (v.shape[0], r, s_int),
            "regime_targets": lambda v: (v.shape[0], r, d),
            "regime_values": lambda v: (v.shape[0], r, d),
            "regime_mask": lambda v: (v.shape[0], r),
            "node_mask": lambda v: (v.shape[0], d),
            "adjacency": lambda v: (v.shape[0], d, d),
        }.get(f.name, lambda v: (v.shape[0], v.shape[1], d))
        out[f.name] = torch.cat([_pad(v, target(v)) for v in values])
    return DiscoveryBatch(**out)
