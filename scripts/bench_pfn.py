"""Time to quality: the seed notebook's Model A pipeline vs our Model A, same wall-clock budget, same test graphs.

    python scripts/bench_pfn.py                  # 10 minutes each on 2 threads (the issue's setting)
    python scripts/bench_pfn.py --minutes 3      # a quicker look

"Notebook" is a faithful re-implementation of the seed's pipeline, with only the fixes needed to run at all:
prior edge_prob = 0.3 over 20-50 nodes (the `scm` simulator reproduces the seed's SCMs: 10 mechanisms, clamp
+-20, 100 samples per regime, ceil(d/2) targets x {5, 8, 10}); items are (all observational rows, the rows of
one regime, a *random* observational row, the intervention mask) with the target delta = interventional row
minus that random row, yielded in the seed's order (32 consecutive items of the same graph per batch);
CausalDistributionEncoder with the six raw features and a node-index embedding (sliced to the graph's size:
the seed adds a 50-row embedding to n tokens, which fails for n < 50); a 4-layer d_model = 128 transformer,
MLP delta head and bilinear DAG head; loss 10 Huber + BCE + 0.1 tr-exp acyclicity (per-graph loop) + 0.01 L1;
AdamW lr 1e-4. "Ours" is `model=pfn_a` trained on `data=scm_prior` with the PFN loss.

Both are scored on the fixed test set er_d20 of `data=scm_prior` (the product's prior: 2 parents per node) and
on a d = 20 set from the notebook's own prior (edge_prob 0.3): edge AUROC, SHD at threshold 0.5, and delta R²
of the true counterfactual deltas in observational z-units (the notebook model predicts raw deltas; they are
divided by the observational std). For the notebook model each query do(i = v) is answered with the regime
that intervened on i at the nearest value as its interventional context. Writes README.md and curves.png
into --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics.functional.classification import binary_auroc

from causal_engine import metrics as M
from causal_engine import plots
from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.data import PriorStream, fixed_set
from causal_engine.discovery.encoder import standardise
from causal_engine.discovery.loss import delta_mask
from causal_engine.discovery.module import true_delta_z
from causal_engine.graphs import predicted_edges
from causal_engine.scm import sample_batch
from causal_engine.scm.prior import SeedPrior
from causal_engine.train import compose

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_PRIOR = {
    "edge_prob": 0.3,
    "expected_parents": None,
    "num_obs": 100,
    "num_int_per_regime": 100,
    "intervention_fraction": 0.5,
    "intervention_values": (5.0, 8.0, 10.0),
}


# --- the notebook's model and loss (re-implemented from the seed's description) ------------------------------
class NotebookEncoder(nn.Module):
    """Six raw per-node features [b_mean, b_std, norm_i_mean, norm_i_std, norm_target, int_mask] + index embedding."""

    def __init__(self, max_nodes: int, d_model: int):
        super().__init__()
        self.proj = nn.Linear(6, d_model)
        self.pos = nn.Embedding(max_nodes, d_model)

    def forward(self, base: Tensor, inter: Tensor, row: Tensor, mask: Tensor) -> Tensor:
        b_mean, b_std = base.mean(1), base.std(1) + 1e-6  # [B, n]
        i_mean, i_std = inter.mean(1), inter.std(1) + 1e-6
        feats = torch.stack([b_mean, b_std, (i_mean - b_mean) / b_std, i_std / b_std, (row - b_mean) / b_std, mask], -1)
        return self.proj(feats) + self.pos(torch.arange(base.shape[-1]))[None]


class NotebookModelA(nn.Module):
    def __init__(self, max_nodes: int = 50, d_model: int = 128, nhead: int = 4, num_layers: int = 4):
        super().__init__()
        self.encoder = NotebookEncoder(max_nodes, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, activation="gelu", batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers)
        self.delta_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 1))
        self.parent, self.child = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, base: Tensor, inter: Tensor, row: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = self.transformer(self.encoder(base, inter, row, mask))
        return self.delta_head(x).squeeze(-1), self.parent(x) @ self.child(x).transpose(1, 2)


def notebook_loss(delta: Tensor, true_delta: Tensor, logits: Tensor, adj: Tensor) -> Tensor:
    probs = torch.sigmoid(logits)
    h = torch.stack([torch.trace(torch.matrix_exp(p * p)) - p.shape[-1] for p in probs]).mean()
    return (
        10 * nn.functional.huber_loss(delta, true_delta)
        + nn.functional.binary_cross_entropy_with_logits(logits, adj)
        + 0.1 * h
        + 0.01 * probs.abs().sum() / probs.numel()
    )


def notebook_batches(generator: torch.Generator, batch_size: int = 32) -> Iterator[tuple[Tensor, ...]]:
    """The seed's item stream: graph after graph, regime after regime, row after row, 32 items per batch."""
    while True:
        d = int(torch.randint(20, 51, (1,), generator=generator))
        g = sample_batch(1, d, num_queries=1, generator=generator, **NOTEBOOK_PRIOR)
        base = g.observational[0]  # [S, d]
        items = []
        for r in range(g.interventional.shape[1]):
            inter, mask = g.interventional[0, r], g.regime_targets[0, r].float()
            for row in inter:
                rand = base[int(torch.randint(base.shape[0], (1,), generator=generator))]
                items.append((inter, rand, mask, row - rand))
        for start in range(0, len(items) - batch_size + 1, batch_size):
            chunk = items[start : start + batch_size]
            yield (
                base.expand(batch_size, *base.shape),
                torch.stack([c[0] for c in chunk]),
                torch.stack([c[1] for c in chunk]),
                torch.stack([c[2] for c in chunk]),
                torch.stack([c[3] for c in chunk]),
                g.adjacency.expand(batch_size, d, d),
            )


def notebook_predict(net: NotebookModelA, batch: DiscoveryBatch) -> tuple[Tensor, Tensor]:
    """Edge logits [B, d, d] and z-unit deltas [B, Q, d] of the notebook model on a DiscoveryBatch (no padding)."""
    std = standardise(batch).std  # [B, d]
    logits, deltas = [], []
    z_values = batch.regime_values
    for b in range(batch.num_graphs):
        per_query = []
        for q in range(batch.query.shape[1]):
            target = batch.query_targets[b, q]
            same = (batch.regime_targets[b] == target).all(-1) & batch.regime_mask[b]
            gap = ((z_values[b] - batch.query_values[b, q]) ** 2).sum(-1).masked_fill(~same, float("inf"))
            r = int(gap.argmin())
            delta, logit = net(
                batch.observational[b : b + 1],
                batch.interventional[b, r][None],
                batch.query[b, q][None],
                target.float()[None],
            )
            per_query.append(delta[0] / std[b])
        logits.append(logit[0])
        deltas.append(torch.stack(per_query))
    return torch.stack(logits), torch.stack(deltas)


# --- scoring ------------------------------------------------------------------------------------------------
def score(logits: Tensor, delta_z: Tensor, batches: list[DiscoveryBatch]) -> dict[str, float]:
    adj = torch.cat([b.adjacency for b in batches])
    node_mask = torch.cat([b.node_mask for b in batches])
    scores, target = M.masked_edges(torch.sigmoid(logits), adj, node_mask)
    truth = torch.cat([true_delta_z(b) for b in batches])
    mask = torch.cat([delta_mask(b) for b in batches])
    return {
        "auroc": float(binary_auroc(scores, target)),
        "shd": float(M.shd(predicted_edges(torch.sigmoid(logits)), adj, node_mask).mean()),
        "delta_r2": float(M.delta_r2(delta_z, truth, mask)),
    }


def evaluate(kind: str, net: nn.Module, batches: list[DiscoveryBatch]) -> dict[str, float]:
    net.eval()
    with torch.no_grad():
        if kind == "notebook":
            outs = [notebook_predict(net, b) for b in batches]
            logits, deltas = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        else:
            outs = [net(b) for b in batches]
            logits, deltas = torch.cat([o.edge_logits for o in outs]), torch.cat([o.delta for o in outs])
    net.train()
    return score(logits, deltas, batches)


def train(kind: str, minutes: float, eval_every: float, sets: dict[str, list], seed: int) -> list[dict[str, float]]:
    """Train for `minutes` of wall clock (evaluation time excluded); evaluate every `eval_every` minutes."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    cfg = compose(["experiment=pfn", "model=pfn_mlp_delta"], REPO / "outputs" / "bench_pfn")
    if kind == "notebook":
        net: nn.Module = NotebookModelA()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        stream = notebook_batches(generator)
    else:
        module = instantiate(cfg.model)
        net, loss_fn = module.net, module.loss_fn
        opt = torch.optim.AdamW(
            net.parameters(), lr=cfg.model.optimizer.lr, weight_decay=cfg.model.optimizer.weight_decay
        )
        dm = cfg.data
        stream = iter(
            PriorStream(
                instantiate(dm.prior),
                dm.batch_size,
                dm.size_groups,
                dm.node_range,
                dm.curriculum_start,
                dm.curriculum_batches,
                seed,
            )
        )
    history, trained, step, next_eval = [], 0.0, 0, 0.0
    while True:
        if trained >= next_eval * 60 or trained >= minutes * 60:
            row = {"minutes": trained / 60, "step": step}
            for name, batches in sets.items():
                row.update({f"{name}/{k}": v for k, v in evaluate(kind, net, batches).items()})
            history.append(row)
            print(kind, {k: round(v, 3) for k, v in row.items()}, flush=True)
            next_eval += eval_every
            if trained >= minutes * 60:
                return history
        start = time.perf_counter()
        if kind == "notebook":
            base, inter, row_, mask, delta, adj = next(stream)
            pred, logits = net(base, inter, row_, mask)
            loss = notebook_loss(pred, delta, logits, adj)
        else:
            batch = next(stream)
            loss = loss_fn(net(batch), batch, true_delta_z(batch), step)["loss"]
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        trained += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall clock per pipeline")
    parser.add_argument("--eval-every", type=float, default=2.0, help="minutes of training between evaluations")
    parser.add_argument("--graphs", type=int, default=16, help="test graphs per set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_pfn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = compose(["data=scm_prior", f"data.test_graphs={args.graphs}", "data.eval_batch_size=8"], args.out)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.select_test_sets(["er_d20"])
    datamodule.setup("test")
    sets = {
        "er_d20": datamodule.test_batches["er_d20"],
        "nb_d20": fixed_set(args.graphs, 8, 20, SeedPrior(**NOTEBOOK_PRIOR), seed=7),
    }
    results = {kind: train(kind, args.minutes, args.eval_every, sets, args.seed) for kind in ("notebook", "ours")}

    keys = [f"{s}/{m}" for s in sets for m in ("auroc", "shd", "delta_r2")]
    lines = ["| pipeline | steps | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for kind, history in results.items():
        last = history[-1]
        lines.append(f"| {kind} | {last['step']} | " + " | ".join(f"{last[k]:.3f}" for k in keys) + " |")
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "README.md").write_text(
        f"# bench_pfn\n\n`python scripts/bench_pfn.py --minutes {args.minutes:g} --threads {args.threads}`\n\n"
        f"Held-out metrics after {args.minutes:g} minutes of training each.\n\n{table}\n"
    )
    fig, axes = plots.plt.subplots(1, 3, figsize=(14, 4))
    for ax, metric in zip(axes, ("auroc", "shd", "delta_r2"), strict=True):
        for kind, history in results.items():
            ax.plot([h["minutes"] for h in history], [h[f"er_d20/{metric}"] for h in history], marker="o", label=kind)
        ax.set_xlabel("training minutes")
        ax.set_title(f"er_d20 {metric}")
        ax.legend()
    plots.save_figure(fig, args.out / "curves.png")
    (args.out / "history.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table)


if __name__ == "__main__":
    main()
