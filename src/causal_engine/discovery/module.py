"""The LightningModule that trains any of models A-E on the SCM prior and reports graph and delta metrics.

Logged: train/{loss,delta,edge,acyclic,l1,acyclic_weight} every step; per validation val/loss and
val/{shd,auroc,auprc,f1,cyclic,delta_rmse,delta_r2} (step = trainer step, so a sweep report can plot them
against training progress) plus hp/val_* for TensorBoard's HParams tab, and two figures (true vs predicted
adjacency of the first validation graph; predicted vs true deltas); per test set test/<name>/<metric>.
Deltas are scored in observational z-units (delta / observational std of the variable), so graphs and
variables with different scales are comparable; the intervened node's own delta (known) is excluded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError, R2Score
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision, BinaryF1Score

from causal_engine import metrics as M
from causal_engine import plots
from causal_engine.discovery.batch import DiscoveryBatch
from causal_engine.discovery.checkpoint import load_pfn
from causal_engine.discovery.data import Prior, fixed_set
from causal_engine.discovery.encoder import NodeEncoder, context_features, standardise
from causal_engine.discovery.loss import PFNLoss, delta_mask
from causal_engine.discovery.models import PFNNet, PFNOutput
from causal_engine.graphs import predicted_edges
from causal_engine.train import register_hp_metrics

METRIC_NAMES = ("shd", "auroc", "auprc", "f1", "cyclic", "delta_rmse", "delta_r2")


def true_delta_z(batch: DiscoveryBatch) -> Tensor:
    """The counterfactual deltas in observational z-units, [B, Q, d] (0 at padding nodes)."""
    return batch.delta / standardise(batch).std[:, None] * batch.node_mask[:, None].float()


class DiscoveryMetrics(nn.Module):
    """Graph and delta metrics of one split (torchmetrics objects, so they sync across DDP ranks)."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold
        self.auroc, self.auprc = BinaryAUROC(), BinaryAveragePrecision()
        self.f1 = BinaryF1Score()  # of the predicted edges (graphs.predicted_edges), 0/1
        self.shd, self.cyclic = MeanMetric(), MeanMetric()
        self.delta_rmse, self.delta_r2 = MeanSquaredError(squared=False), R2Score()

    def update(self, out: PFNOutput, batch: DiscoveryBatch, delta_z: Tensor) -> None:
        probs = out.edge_probs
        scores, target = M.masked_edges(probs, batch.adjacency, batch.node_mask)
        self.auroc.update(scores, target)
        self.auprc.update(scores, target)
        pred = predicted_edges(probs, self.threshold)
        self.f1.update(M.masked_edges(pred.float(), batch.adjacency, batch.node_mask)[0], target)
        self.shd.update(M.shd(pred, batch.adjacency, batch.node_mask))
        self.cyclic.update(M.is_cyclic(pred, batch.node_mask).float())
        mask = delta_mask(batch)
        self.delta_rmse.update(out.delta[mask], delta_z[mask])
        self.delta_r2.update(out.delta[mask], delta_z[mask])

    def compute(self) -> dict[str, Tensor]:
        return {name: getattr(self, name).compute() for name in METRIC_NAMES}

    def reset(self) -> None:
        for name in METRIC_NAMES:
            getattr(self, name).reset()


PAIR_NORM_GRAPHS = 256  # prior graphs whose pair features fit an unfitted QuantileNorm (PFNModule.on_fit_start)
PAIR_NORM_SEED = 20261205
_PAIR_NORM_SIZES = (5, 10, 20, 30, 50, 100)  # spread over the sizes a checkpoint is trained on


def prior_pair_features(encoder: NodeEncoder, prior: Prior, graphs: int, seed: int) -> Tensor:
    """`encoder`'s context pair features [N, F] (its shrinkage and feature space) of every off-diagonal pair of
    `graphs` fresh prior graphs, spread over `_PAIR_NORM_SIZES` (observational-only tables and regimes as the
    prior draws them)."""
    rows = []
    for k, d in enumerate(_PAIR_NORM_SIZES):
        for batch in fixed_set(max(1, graphs // len(_PAIR_NORM_SIZES)), 8, d, prior, seed + k):
            pair = context_features(batch, encoder.shrinkage, encoder.feature_space).pair  # [B, d, d, F]
            rows.append(pair[~torch.eye(d, dtype=torch.bool).expand(pair.shape[:3])])
    return torch.cat(rows)


class PFNModule(L.LightningModule):
    """Wires a PFN net (models A-E) to the loss, the optimiser and the metrics.

    Args:
        net: a `PFNNet` (MLPDeltaPFN ... HyperDeltaPFN, models A-E).
        optimizer: partial optimiser, called with the parameters.
        loss: the weighted loss (defaults as in `PFNLoss`).
        scheduler: optional partial LR scheduler, stepped every optimiser step.
        threshold: link probability P(i -> j) + P(j -> i) from which a pair is predicted an edge, in its more
            probable direction (`graphs.predicted_edges`; SHD, F1, cyclicity).
        init_checkpoint: start from a trained PFN (e.g. the shipped `checkpoints/pfn.pt`) to fine-tune it; its
            architecture and weights replace `net`, except that `net`'s `pair_norm_knots`, when the checkpoint has
            none, adds the pair-feature normalisation (`encoder.QuantileNorm`) to it.

    A `QuantileNorm` not yet fitted is fitted when training starts, on `PAIR_NORM_GRAPHS` fresh graphs of the
    datamodule's prior (seeded, so every DDP rank fits the same knots).
    """

    def __init__(
        self,
        net: PFNNet,
        optimizer: Callable[..., torch.optim.Optimizer],
        loss: PFNLoss | None = None,
        scheduler: Callable[..., Any] | None = None,
        threshold: float = 0.5,
        init_checkpoint: str | None = None,
    ):
        super().__init__()
        if init_checkpoint is not None:
            # load_pfn returns a net in eval mode (for inference); Lightning keeps each module's mode when
            # training starts, so without train() the fine-tune would run with dropout off.
            knots = net.init_kwargs.get("pair_norm_knots", 0)
            net = load_pfn(init_checkpoint, key="model.init_checkpoint").train()
            if knots and net.encoder.pair_norm is None:
                net.add_pair_norm(knots)
        # Only plain values go into hparams: checkpoints must load with torch.load(weights_only=True), which
        # rejects pickled Hydra partials (optimizer, scheduler) and modules.
        self.save_hyperparameters(logger=False, ignore=["net", "loss", "optimizer", "scheduler"])
        self.hparams["net_spec"] = net.net_spec()
        self.optimizer, self.scheduler = optimizer, scheduler
        self.net = net
        self.loss_fn = loss or PFNLoss()
        self.val_metrics = DiscoveryMetrics(threshold)
        self.test_metrics = nn.ModuleDict()
        self._figure_batch: tuple[DiscoveryBatch, PFNOutput] | None = None
        self._scatter: list[tuple[Tensor, Tensor]] = []

    def forward(self, batch: DiscoveryBatch) -> PFNOutput:
        return self.net(batch)

    # Hooks ------------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(datamodule, "test_names", ["test"])
        for name in names:
            if name not in self.test_metrics:
                self.test_metrics[name] = DiscoveryMetrics(self.hparams.threshold)

    def on_fit_start(self) -> None:
        norm = self.net.encoder.pair_norm
        if norm is not None and not bool(norm.fitted):
            prior = self.trainer.datamodule.prior
            norm.fit(prior_pair_features(self.net.encoder, prior, PAIR_NORM_GRAPHS, PAIR_NORM_SEED))

    def on_train_start(self) -> None:
        register_hp_metrics(self, [f"hp/val_{name}" for name in METRIC_NAMES])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["net_spec"] = self.net.net_spec()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(params=self.parameters())
        if self.scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler(optimizer=optimizer), "interval": "step"},
        }

    # Steps ------------------------------------------------------------------------------------------------------
    def training_step(self, batch: DiscoveryBatch, batch_idx: int) -> Tensor:
        self.net.update_schedule(self.global_step)
        out = self.net(batch)
        parts = self.loss_fn(out, batch, true_delta_z(batch), self.global_step)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=batch.num_graphs, prog_bar=False)
        self.log("train/acyclic_weight", self.loss_fn.acyclic_weight(self.global_step), batch_size=batch.num_graphs)
        return parts["loss"]

    def validation_step(self, batch: DiscoveryBatch, batch_idx: int) -> None:
        out = self.net(batch)
        delta_z = true_delta_z(batch)
        parts = self.loss_fn(out, batch, delta_z, self.global_step)
        self.log("val/loss", parts["loss"], batch_size=batch.num_graphs, sync_dist=True, prog_bar=True)
        self.val_metrics.update(out, batch, delta_z)
        if batch_idx == 0:
            self._figure_batch = (batch, out)
        mask = delta_mask(batch)
        self._scatter.append((delta_z[mask][:500].cpu(), out.delta[mask][:500].cpu()))

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=True)
        self.log_dict({f"hp/val_{k}": v for k, v in values.items()}, sync_dist=True)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking and self.loggers:
            self._figures()
        self._figure_batch, self._scatter = None, []

    def _figures(self) -> None:
        batch, out = self._figure_batch
        n = int(batch.node_mask[0].sum())
        adj = plots.adjacency_figure(batch.adjacency[0, :n, :n].cpu(), out.edge_probs[0, :n, :n].detach().cpu())
        true, pred = (torch.cat(t).numpy() for t in zip(*self._scatter, strict=True))
        scatter = plots.delta_scatter_figure(true, pred)
        out_dir = plots.figure_dir(self.trainer)
        for tag, fig in (("val/adjacency", adj), ("val/delta_scatter", scatter)):
            plots.log_figure(self.loggers, tag, fig, self.global_step, close=out_dir is None)
            if out_dir is not None:
                plots.save_figure(fig, out_dir / f"{tag.replace('/', '_')}.png")

    def test_step(self, batch: DiscoveryBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        name = list(self.test_metrics)[dataloader_idx]
        metric = self.test_metrics[name]
        metric.update(self.net(batch), batch, true_delta_z(batch))
        # Logging the metric objects lets Lightning compute (and DDP-sync) them per dataloader at epoch end.
        self.log_dict(
            {f"test/{name}/{k}": getattr(metric, k) for k in METRIC_NAMES},
            batch_size=batch.num_graphs,
            add_dataloader_idx=False,
        )
