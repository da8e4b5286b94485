"""A per-pair second opinion on every edge, fitted on prior draws after the trunk is trained.

Why: the trunk reads the 32 pair features only through attention biases and its edge head, and a small per-pair
network over the same features, each mapped through its prior quantiles (`encoder.QuantileNorm`), ranks edges
as well as the trunk on held-out prior graphs and better on tables from other generators. The two disagree
enough that a logistic mix of their logits ranks better than either. The head is fitted with the trunk frozen
(`fit_pair_head`), so the trunk's deltas and everything it learned stay as they were; the mix is fitted on prior
graphs the head never saw. A net carries its head in its state dict (`PFNNet.add_pair_head`, `pair_head_hidden`
in its net_spec), so `load_pfn` restores it; the head is the identity on the trunk's logits until it is fitted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from causal_engine.discovery.data import Prior, fixed_set
from causal_engine.discovery.encoder import NUM_PAIR_FEATURES, QuantileNorm, blocks
from causal_engine.metrics import valid_edge_mask

log = logging.getLogger(__name__)

KNOTS = 32  # quantiles per feature of the head's QuantileNorm
HEAD_BLOCK = 1 << 17  # elements of the head's hidden layer per block (`encoder.blocks`)


class PairHead(nn.Module):
    """logit(i -> j) = a * trunk logit + b * MLP(QuantileNorm(pair_ij)) + c on graphs of at least `min_nodes`
    variables (the smallest size it was fitted on, below which it is untested); the trunk alone until
    `fit_pair_head` fits the norm, the MLP, the mix and `min_nodes`."""

    def __init__(self, hidden: int):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"model.net.pair_head_hidden must be 0 (no head) or positive, got {hidden}")
        self.norm = QuantileNorm(NUM_PAIR_FEATURES, KNOTS)
        self.mlp = nn.Sequential(
            nn.Linear(NUM_PAIR_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1)
        )
        self.register_buffer("mix", torch.tensor([1.0, 0.0, 0.0]))  # (a, b, c)
        self.register_buffer("min_nodes", torch.zeros((), dtype=torch.long))

    def head_logits(self, pair: Tensor) -> Tensor:
        """Pair features [B, d, d, F] -> the head's own logits [B, d, d]: the norm in one pass (its knot scores
        are computed once), the MLP in blocks of rows."""
        b, d = pair.shape[:2]
        normed = self.norm(pair)  # [B, d, d, F]
        out = pair.new_empty(pair.shape[:3])
        for g, i in blocks(b, d, d * self.mlp[0].out_features, HEAD_BLOCK):
            out[g, i] = self.mlp(normed[g, i]).squeeze(-1)
        return out

    def pair_logits(self, pair: Tensor) -> Tensor:
        """Pair features [N, F] of N pairs (`prior_pairs`) -> the head's own logits [N]."""
        return self.mlp(self.norm(pair)).squeeze(-1)

    def _mix(self, trunk: Tensor, own: Tensor) -> Tensor:
        """a * trunk + b * own + c, elementwise."""
        a, b, c = self.mix
        return a * trunk + b * own + c

    def mixed(self, pair: Tensor, trunk: Tensor) -> Tensor:
        """The mixed logits [N] for the features [N, F] and trunk logits [N] of N pairs, whatever their graphs'
        sizes (`prior_pairs`): the mix `forward` applies, without its size rule."""
        return self._mix(trunk, self.pair_logits(pair))

    def forward(self, pair: Tensor, trunk: Tensor, node_mask: Tensor) -> Tensor:
        """Pair features [B, d, d, F], the trunk's edge logits [B, d, d] and the node mask [B, d] -> edge logits
        [B, d, d]: mixed on graphs of at least `min_nodes` real nodes, the trunk's on smaller ones."""
        if not bool(self.norm.fitted):
            return trunk
        small = node_mask.sum(1) < self.min_nodes  # [B]
        return torch.where(small[:, None, None], trunk, self._mix(trunk, self.head_logits(pair)))


def prior_pairs(
    net: nn.Module, priors: Sequence[Prior], sizes: Sequence[int], graphs: int, seed: int, keep: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Pair features [N, F], `net`'s edge logits [N] and labels [N] of a random `keep` share of the real
    off-diagonal pairs of `graphs` fresh graphs per size, shared evenly among `priors` (observational-only tables
    and regimes as each prior draws them)."""
    generator = torch.Generator().manual_seed(seed)
    pairs, logits, labels = [], [], []
    for p, prior in enumerate(priors):
        for k, d in enumerate(sizes):
            for batch in fixed_set(max(1, graphs // len(priors)), 8, d, prior, seed + 100 * p + k):
                with torch.inference_mode():
                    ctx = net.context(batch)
                sampled = torch.rand(ctx.edge_logits.shape, generator=generator) < keep  # [B, d, d]
                take = valid_edge_mask(batch.node_mask) & sampled
                pairs.append(ctx.pair[take])
                logits.append(ctx.edge_logits[take])
                labels.append(batch.adjacency[take])
    return torch.cat(pairs), torch.cat(logits), torch.cat(labels)


def fit_pair_head(
    net: nn.Module,
    priors: Sequence[Prior],
    hidden: int = 64,
    sizes: Sequence[int] = (10, 15, 20, 30, 50),
    graphs: int = 4096,
    keep: float = 0.2,
    epochs: int = 6,
    seed: int = 0,
) -> PairHead:
    """A `PairHead` for the trained `net` (its trunk frozen; `net` itself is not changed, and a head it already
    has is ignored).

    The norm's knots and the MLP are fitted on `keep` of the pairs of `graphs` graphs per size, shared among
    `priors` (binary cross-entropy, Adam, `epochs` passes in batches of 4096), the mix (a, b, c) by logistic
    regression of the labels on (trunk logit, head logit) over as many other prior graphs (seed + 1000): the head
    would look better than it is on its own training pairs. `min_nodes` is the smallest of `sizes`."""
    torch.manual_seed(seed)
    own, net.pair_head = net.pair_head, None  # the trunk's own logits, also when refitting a net's head
    try:
        pairs, _, labels = prior_pairs(net, priors, sizes, graphs, seed, keep)
        mix_pairs, trunk, mix_labels = prior_pairs(net, priors, sizes, graphs, seed + 1000, keep)
    finally:
        net.pair_head = own
    log.info("pair head: %d pairs of %d prior graphs", len(labels), graphs * len(sizes))
    head = PairHead(hidden)
    head.norm.fit(pairs)
    x = head.norm(pairs)  # [N, F]
    optimizer = torch.optim.Adam(head.mlp.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(labels)).split(4096):
            loss = nn.functional.binary_cross_entropy_with_logits(head.mlp(x[idx]).squeeze(-1), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        inputs = torch.stack([trunk, head.pair_logits(mix_pairs)], 1).double()  # [N, 2]
    head.mix.copy_(logistic_mix(inputs, mix_labels.double()))
    head.min_nodes.fill_(min(sizes))
    return head.eval()


def logistic_mix(inputs: Tensor, labels: Tensor) -> Tensor:
    """(a, b, c) of the logistic regression labels ~ sigmoid(a x_1 + b x_2 + c) for inputs [N, 2] (L-BFGS)."""
    w = torch.zeros(3, dtype=inputs.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(inputs @ w[:2] + w[2], labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().float()
