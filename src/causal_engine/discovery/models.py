"""The causal PFN models (A-E): one node-token transformer, two heads, five ways of predicting structure and deltas.

Shared skeleton (`PFNNet`):
    encoder   batch -> node tokens [B, d, D], pair features [B, d, d, F] (+ query features [B, Q, d, 3] per query)
    trunk     `n_layers` biased-attention layers over nodes (bias from the pair features) -> h [B, d, D]
    dag head  edge logit(i -> j) = <P h_i, C h_j> / sqrt(D) + MLP(pair_ij, P h_i + C h_j)   -> [B, d, d]
              (mixed with a per-pair head's logit once one is fitted: `pair_head`)
    delta     h + embedding of each query's features, flattened to [B*Q, d, D], `n_delta_layers` more
              layers, then a head -> standardised deltas [B, Q, d] (delta / observational std)
The structure does not depend on the query; the deltas do. The intervened nodes' own deltas are known
(do-value minus factual value) and are overwritten with the exact value; the loss ignores them.

Variants (class, `model=` config, letter alias of the model comparison):
    A  MLPDeltaPFN      pfn_mlp_delta      the skeleton with an MLP delta head.
    B  NodeExpertPFN    pfn_node_experts   per-node delta experts
    C  GumbelEdgePFN    pfn_gumbel_edges   Gumbel-sigmoid edges
    D  DAGAttentionPFN  pfn_dag_attention  the predicted DAG biases the delta layers' attention
    E  HyperDeltaPFN    pfn_hyper_delta    hypernetwork delta projection

    A  the skeleton with an MLP delta head.
    B  per-node delta experts: node k uses expert k, so B uses node identity (sized by `max_nodes`) and is not
       permutation-equivariant.
    C  Gumbel-sigmoid edges: in training the structural penalties see relaxed Bernoulli samples at a temperature
       annealed on a schedule; in evaluation the edges are the deterministic probabilities sigmoid(logit).
    D  the predicted DAG biases the delta layers' attention: node j attends to i with an additive
       bias_scale * (p(i -> j) - 1), so deltas flow along predicted edges (plus itself).
    E  hypernetwork delta projection conditioned on the intervened node by its features (its token after the
       delta layers and its standardised do-value), so E stays permutation-equivariant (no per-node embedding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.encoder import (
    NUM_PAIR_FEATURES,
    NUM_QUERY_FEATURES,
    BiasedEncoderLayer,
    NodeEncoder,
    PairBias,
    QuantileNorm,
    blocks,
    query_features,
    scaled_init,
)
from causal_engine.discovery.pair_head import PairHead

# Elements per block of the edge head's hidden layer: larger than the encoder's blocks, because a block of the head
# is a handful of operations, each doing more work per element, so the per-operation overhead weighs more.
EDGE_BLOCK = 1 << 18
# The weights that read the pair features (their input columns, after the edge MLP's D token columns).
PAIR_INPUTS = ("edge_mlp.0.weight", "trunk_bias.mlp.0.weight", "delta_bias.mlp.0.weight")


@dataclass
class PFNOutput:
    edge_logits: Tensor  # [B, d, d]; diagonal meaningless (masked everywhere)
    delta: Tensor  # [B, Q, d] standardised deltas (delta / observational std), exact at intervened nodes
    edge_sample: Tensor | None = None  # [B, d, d] model C in training: relaxed samples for the penalties

    @property
    def edge_probs(self) -> Tensor:
        return torch.sigmoid(self.edge_logits)


@dataclass
class Context:
    """The part of a forward pass that does not depend on the queries, computed once per dataset: the graph is
    read from here, and any number of query chunks reuse it for their deltas."""

    h: Tensor  # [B, d, D] trunk tokens
    edge_logits: Tensor  # [B, d, d]
    pair: Tensor  # [B, d, d, F] pairwise features
    mean: Tensor  # [B, d] observational location and ...
    std: Tensor  # [B, d] ... scale: the z-units of queries and deltas
    node_mask: Tensor  # [B, d] bool


def gumbel_sigmoid(logits: Tensor, tau: float, hard: bool = False) -> Tensor:
    """Relaxed Bernoulli sample sigmoid((logit + logistic noise) / tau); straight-through 0/1 when `hard`."""
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    y = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    return (y > 0.5).float() - y.detach() + y if hard else y


class PFNNet(nn.Module):
    """The shared skeleton (= model A). Subclasses change one piece each."""

    def __init__(
        self,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 3,
        n_delta_layers: int = 2,
        dropout: float = 0.0,
        shrinkage: float = 0.2,
        max_nodes: int = 100,
        feature_space: str = "copula",
        pair_norm_knots: int = 0,
        pair_head_hidden: int = 0,
        **variant: Any,
    ):
        super().__init__()
        # Everything needed to rebuild the net from a checkpoint (see `net_spec`).
        self.init_kwargs = dict(
            d_model=d_model,
            n_heads=n_heads,
            n_layers=n_layers,
            n_delta_layers=n_delta_layers,
            dropout=dropout,
            shrinkage=shrinkage,
            max_nodes=max_nodes,
            feature_space=feature_space,
            pair_norm_knots=pair_norm_knots,
            pair_head_hidden=pair_head_hidden,
            **variant,
        )
        self.d_model, self.n_heads, self.max_nodes = d_model, n_heads, max_nodes
        self.encoder = NodeEncoder(d_model, shrinkage, feature_space, pair_norm_knots)
        self.trunk = nn.ModuleList(BiasedEncoderLayer(d_model, n_heads, dropout) for _ in range(n_layers))
        self.trunk_bias = PairBias(n_layers, n_heads)
        self.trunk_norm = nn.LayerNorm(d_model)
        self.parent = nn.Linear(d_model, d_model)
        self.child = nn.Linear(d_model, d_model)
        self.edge_mlp = nn.Sequential(nn.Linear(d_model + NUM_PAIR_FEATURES, d_model), nn.GELU(), nn.Linear(d_model, 1))
        self.query_proj = nn.Linear(NUM_QUERY_FEATURES, d_model)
        self.delta_layers = nn.ModuleList(BiasedEncoderLayer(d_model, n_heads, dropout) for _ in range(n_delta_layers))
        self.delta_bias = PairBias(n_delta_layers, n_heads)
        self.delta_norm = nn.LayerNorm(d_model)
        self.delta_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 1))
        scaled_init(self, n_layers + n_delta_layers)
        # The per-pair second opinion on each edge (`pair_head`), fitted after training by `fit_pair_head`.
        self.pair_head = PairHead(pair_head_hidden) if pair_head_hidden else None

    def net_spec(self) -> dict[str, Any]:
        """Class path and constructor arguments: a checkpoint carries them so the net can be rebuilt alone."""
        return {"target": f"{type(self).__module__}.{type(self).__qualname__}", "kwargs": dict(self.init_kwargs)}

    def widen_pair_inputs(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
        """A state dict trained on an earlier, shorter list of pair features (a prefix of today's, see the encoder),
        with zero weights for the features it never saw, so it predicts exactly as it was trained and fine-tuning
        (`model.init_checkpoint`) learns to use them. Returns (state, pair features the checkpoint had)."""
        own, out, seen = self.state_dict(), dict(state), NUM_PAIR_FEATURES
        for key in PAIR_INPUTS:
            if key not in state or key not in own or state[key].shape == own[key].shape:
                continue
            weight, missing = state[key], own[key].shape[1] - state[key].shape[1]
            if weight.shape[0] != own[key].shape[0] or missing <= 0:
                continue  # not an older feature list: load_state_dict reports the mismatch
            out[key] = torch.cat([weight, weight.new_zeros(weight.shape[0], missing)], 1)
            seen = NUM_PAIR_FEATURES - missing
        return out, seen

    def add_pair_norm(self, knots: int) -> None:
        """Give a trained net (one loaded without it) an unfitted `QuantileNorm` of `knots` knots on its pair
        features, recorded in its net_spec; its first layers must then be fine-tuned to the new inputs."""
        self.encoder.pair_norm = QuantileNorm(NUM_PAIR_FEATURES, knots)
        self.init_kwargs["pair_norm_knots"] = knots

    def add_pair_head(self, head: PairHead) -> None:
        """Give a trained net a fitted `PairHead` (`pair_head.fit_pair_head`), recorded in its net_spec."""
        self.pair_head = head
        self.init_kwargs["pair_head_hidden"] = head.mlp[0].out_features

    def update_schedule(self, step: int) -> None:
        """Called by the LightningModule before every training step (model C anneals its temperature)."""

    # Pieces -------------------------------------------------------------------------------------------------
    def edge_head(self, h: Tensor, pair: Tensor) -> Tensor:
        """Tokens [B, d, D] + pair features -> edge logits [B, d, d].

        The MLP reads concat(P h_i + C h_j, pair_ij). Its first layer is applied term by term,
        W_h P h_i + W_h C h_j + W_pair pair_ij: the same function, but the d^2 pairs only meet the F-wide
        W_pair instead of a (D + F)-wide product. The [B, d, d, D] hidden layer, the largest tensor of
        inference, is computed in blocks of rows (`blocks`, EDGE_BLOCK elements).
        """
        b, d, _ = h.shape
        p, c = self.parent(h), self.child(h)  # [B, d, D]
        logits = p @ c.transpose(1, 2) / math.sqrt(self.d_model)  # [B, d, d] the bilinear term
        first, rest = self.edge_mlp[0], self.edge_mlp[1:]
        w_h, w_pair = first.weight.split([self.d_model, NUM_PAIR_FEATURES], dim=1)
        from_parent = nn.functional.linear(p, w_h, first.bias)[:, :, None]  # [B, d, 1, D]
        from_child = nn.functional.linear(c, w_h)[:, None]  # [B, 1, d, D]
        for g, i in blocks(b, d, d * self.d_model, EDGE_BLOCK):
            hidden = nn.functional.linear(pair[g, i], w_pair)  # [b', i', d, D]
            hidden += from_parent[g, i]
            hidden += from_child[g]
            logits[g, i] += rest(hidden).squeeze(-1)
        return logits

    def structure(self, tokens: Tensor, pair: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Trunk over nodes -> (tokens h [B, d, D], edge logits [B, d, d])."""
        h = tokens
        for layer, bias in zip(self.trunk, self.trunk_bias(pair), strict=True):
            h = layer(h, bias, node_mask)
        h = self.trunk_norm(h)
        logits = self.edge_head(h, pair)
        return h, logits if self.pair_head is None else self.pair_head(pair, logits, node_mask)

    def delta_attention_bias(self, pair: Tensor, edge_logits: Tensor, q: int) -> Tensor:
        """Attention bias of the delta layers, [L, B*Q, H, d, d]."""
        return self.delta_bias(pair).repeat_interleave(q, dim=1)

    def project_delta(self, x: Tensor, query_feats: Tensor) -> Tensor:
        """Delta tokens [B*Q, d, D] -> standardised deltas [B*Q, d]."""
        return self.delta_head(x).squeeze(-1)

    def deltas(self, h: Tensor, query_feats: Tensor, pair: Tensor, edge_logits: Tensor, node_mask: Tensor) -> Tensor:
        b, q, d, _ = query_feats.shape
        x = (h[:, None] + self.query_proj(query_feats)).reshape(b * q, d, -1)  # [B*Q, d, D]
        key_mask = node_mask.repeat_interleave(q, 0)  # [B*Q, d]
        biases = self.delta_attention_bias(pair, edge_logits, q)
        for layer, bias in zip(self.delta_layers, biases, strict=True):
            x = layer(x, bias, key_mask)
        x = self.delta_norm(x)
        return self.project_delta(x, query_feats.reshape(b * q, d, -1)).view(b, q, d)

    # Whole passes ---------------------------------------------------------------------------------------------
    def context(self, batch: DiscoveryBatch) -> Context:
        """Samples -> features -> trunk -> edge logits: everything up to the graph (no query involved)."""
        if batch.num_nodes > self.max_nodes:
            raise ValueError(
                f"{type(self).__name__} supports at most max_nodes={self.max_nodes} variables, got {batch.num_nodes}"
            )
        tokens, feats = self.encoder(batch)
        h, logits = self.structure(tokens, feats.pair, batch.node_mask)
        return Context(h, logits, feats.pair, feats.mean, feats.std, batch.node_mask)

    def query_deltas(self, ctx: Context, query: Tensor, targets: Tensor, values: Tensor) -> Tensor:
        """Standardised deltas [B, Q, d] of factual rows `query` [B, Q, d] under do(targets = values).

        The intervened nodes' own deltas are known (do-value - factual value, in z-units) and written exactly, and
        so is consistency: a query that sets every target to the value its row already has (a treated row asked
        about do(treated = 1)), or has no target, changes nothing, so all its deltas are 0.
        """
        with torch.no_grad():
            feats = query_features(query, targets, values, ctx.mean, ctx.std, ctx.node_mask)  # [B, Q, d, 3]
        delta = self.deltas(ctx.h, feats, ctx.pair, ctx.edge_logits, ctx.node_mask)
        exact = feats[..., 2] - feats[..., 0]  # standardised do-value - standardised factual value
        unchanged = ((values == query) | ~targets).all(-1, keepdim=True)  # [B, Q, 1]
        return torch.where(targets, exact, delta).masked_fill(unchanged, 0.0) * ctx.node_mask[:, None].float()

    def forward(self, batch: DiscoveryBatch) -> PFNOutput:
        ctx = self.context(batch)
        delta = self.query_deltas(ctx, batch.query, batch.query_targets, batch.query_values)
        return PFNOutput(ctx.edge_logits, delta, self.sample_edges(ctx.edge_logits))

    def sample_edges(self, logits: Tensor) -> Tensor | None:
        return None


class MLPDeltaPFN(PFNNet):
    """Transformer over node tokens + MLP delta head + bilinear/pairwise DAG head (the skeleton)."""


class NodeExpertPFN(PFNNet):
    """Per-node delta experts. Uses node identity: input position k always goes to expert k, so the model needs
    `max_nodes` experts and is NOT permutation-equivariant (that is the hypothesis B tests)."""

    def __init__(self, *, d_model: int = 64, max_nodes: int = 100, expert_hidden: int = 32, **kw: Any):
        super().__init__(d_model=d_model, max_nodes=max_nodes, expert_hidden=expert_hidden, **kw)
        # Batched experts: weights indexed by node position instead of a ModuleList loop.
        self.w1 = nn.Parameter(torch.randn(max_nodes, d_model, expert_hidden) / math.sqrt(d_model))
        self.b1 = nn.Parameter(torch.zeros(max_nodes, expert_hidden))
        self.w2 = nn.Parameter(torch.randn(max_nodes, expert_hidden) / math.sqrt(expert_hidden))
        self.b2 = nn.Parameter(torch.zeros(max_nodes))
        del self.delta_head

    def project_delta(self, x: Tensor, query_feats: Tensor) -> Tensor:
        d = x.shape[1]
        hidden = torch.nn.functional.gelu(torch.einsum("nkd,kde->nke", x, self.w1[:d]) + self.b1[:d])
        return (hidden * self.w2[:d]).sum(-1) + self.b2[:d]


class GumbelEdgePFN(PFNNet):
    """Gumbel-sigmoid edges with an annealed temperature.

    Training: the acyclicity and sparsity penalties act on relaxed Bernoulli samples of the edges at
    temperature tau(step), which falls linearly from `tau_start` to `tau_end` over `anneal_steps` (then stays);
    `hard` uses straight-through 0/1 samples. Evaluation: deterministic probabilities sigmoid(logit).
    """

    def __init__(
        self,
        *,
        tau_start: float = 1.0,
        tau_end: float = 0.2,
        anneal_steps: int = 2000,
        hard: bool = False,
        **kw: Any,
    ):
        super().__init__(tau_start=tau_start, tau_end=tau_end, anneal_steps=anneal_steps, hard=hard, **kw)
        self.tau_start, self.tau_end, self.anneal_steps, self.hard = tau_start, tau_end, anneal_steps, hard
        self.tau = tau_start

    def update_schedule(self, step: int) -> None:
        frac = min(1.0, step / max(1, self.anneal_steps))
        self.tau = self.tau_start + (self.tau_end - self.tau_start) * frac

    def sample_edges(self, logits: Tensor) -> Tensor | None:
        return gumbel_sigmoid(logits, self.tau, self.hard) if self.training else None


class DAGAttentionPFN(PFNNet):
    """Two stages: the trunk predicts the DAG; the delta layers attend along it.

    The bias for node j attending to node i is bias_scale * (p(i -> j) - 1): 0 for a sure parent, -bias_scale
    for a sure non-parent; a node always attends to itself. Gradients of the delta loss reach the DAG head
    through the bias unless `detach_structure`.
    """

    def __init__(self, *, bias_scale: float = 10.0, detach_structure: bool = False, **kw: Any):
        super().__init__(bias_scale=bias_scale, detach_structure=detach_structure, **kw)
        self.bias_scale, self.detach_structure = bias_scale, detach_structure
        del self.delta_bias

    def structural_bias(self, edge_logits: Tensor) -> Tensor:
        """Edge logits [B, d, d] (i -> j) -> attention bias [B, 1, d(query j), d(key i)]."""
        p = torch.sigmoid(edge_logits.detach() if self.detach_structure else edge_logits).transpose(1, 2)
        eye = torch.eye(p.shape[-1], device=p.device)
        return (self.bias_scale * (p - 1) * (1 - eye))[:, None]

    def delta_attention_bias(self, pair: Tensor, edge_logits: Tensor, q: int) -> Tensor:
        bias = self.structural_bias(edge_logits).repeat_interleave(q, dim=0)  # [B*Q, 1, d, d]
        return bias.expand(len(self.delta_layers), *bias.shape)


class HyperDeltaPFN(PFNNet):
    """Hypernetwork delta projection conditioned on the intervened node by its features.

    The instruction vector is the mean delta-layer token of the query's intervened node(s) concatenated with
    their standardised do-value; a small MLP turns it into the weights and bias of the final projection, so
    each intervention gets its own read-out. No per-node embedding: E stays permutation-equivariant.
    """

    def __init__(self, *, d_model: int = 64, hyper_hidden: int = 64, **kw: Any):
        super().__init__(d_model=d_model, hyper_hidden=hyper_hidden, **kw)
        self.hyper = nn.Sequential(
            nn.Linear(d_model + 1, hyper_hidden), nn.GELU(), nn.Linear(hyper_hidden, d_model + 1)
        )
        del self.delta_head

    def project_delta(self, x: Tensor, query_feats: Tensor) -> Tensor:
        target = query_feats[..., 1:2]  # [N, d, 1] intervened flag
        n = target.sum(1).clamp_min(1)  # [N, 1]
        instr = torch.cat([(x * target).sum(1) / n, (query_feats[..., 2:3] * target).sum(1) / n], -1)
        wb = self.hyper(instr)  # [N, D + 1]
        return (x * wb[:, None, :-1]).sum(-1) / math.sqrt(self.d_model) + wb[:, -1:]


# The letters of the model comparison (docs/pfn.md), kept as aliases: checkpoints name their class either way.
ModelA = MLPDeltaPFN
ModelB = NodeExpertPFN
ModelC = GumbelEdgePFN
ModelD = DAGAttentionPFN
ModelE = HyperDeltaPFN
NETS: dict[str, type[PFNNet]] = {
    **{cls.__name__: cls for cls in (MLPDeltaPFN, NodeExpertPFN, GumbelEdgePFN, DAGAttentionPFN, HyperDeltaPFN)},
    "ModelA": ModelA,
    "ModelB": ModelB,
    "ModelC": ModelC,
    "ModelD": ModelD,
    "ModelE": ModelE,
}


def build_net(spec: dict[str, Any]) -> PFNNet:
    """Rebuild a net from `PFNNet.net_spec()` (class path + kwargs) without Hydra."""
    module, _, name = spec["target"].rpartition(".")
    if module != __name__ or name not in NETS:
        raise ValueError(f"unknown PFN model class {spec['target']!r}")
    # Checkpoints from before `feature_space` existed were trained on z-score features.
    return NETS[name](**{"feature_space": "zscore", **spec["kwargs"]})
