"""The LightningModule that trains any do-query network (StructuralMLP or a plain OutcomeMLP) and scores it
against the simulator's exact interventional and counterfactual answers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from causal_engine import metrics, plots
from causal_engine.graphs import reachability
from causal_engine.intervene.data import GraphInfo, InterveneDataModule
from causal_engine.intervene.do import Interventions, NodeIntervention, history_markdown
from causal_engine.intervene.losses import CausalLosses, composition_loss, counterfactual_loss, intervention_loss
from causal_engine.intervene.models import StructuralMLP
from causal_engine.train import log_text, register_hp_metrics

HP_METRICS = ("hp/do_rmse", "hp/cf_rmse", "hp/mmd", "hp/obs_mse")


def build_net(factory: Callable[..., nn.Module], graph: GraphInfo) -> nn.Module:
    """Call a network factory (a partial from config) with the graph arguments its signature takes."""
    available = {
        "adjacency": graph.adjacency,
        "names": graph.names,
        "treatment": graph.treatment,
        "outcome": graph.outcome,
    }
    params = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in available.items() if k in params})


@torch.no_grad()
def score_answers(net: Any, graph: GraphInfo, x_ref: Tensor, truth: Any, cf_shift: float) -> dict[str, Tensor]:
    """Score any network with `interventional` / `counterfactual` methods against the simulator's `truth`
    (`data.Truth`, built on the same reference rows `x_ref` [n, D]).

    The model's do-response averages over the reference rows' abducted noise, so `do_rmse`, `do_rel_rmse`
    and `ate_error` compare it with the same rows' exact do-response (`truth.rows_do_mean`): a perfect
    model scores 0 on any finite reference set. `do_rmse_pop` / `ate_error_pop` compare it with the
    population E[Y | do(X = v)] and so include the rows' sampling error, a floor shared by every model.
    `mmd`: unbiased MMD² of Y under do(X = median) (the rows' samples vs independent true draws; mean 0
    for a perfect model, so no floor). `cf_rmse`: Y under do(X := X + cf_shift) per unit against the
    rows' exact counterfactuals. `composition` (structural nets): null-intervention rollout vs factual.
    """
    t, y = graph.treatment, graph.outcome
    curve = torch.stack([net.interventional(x_ref, {t: float(v)})[:, y].mean() for v in truth.grid])  # [V]
    errors = metrics.do_response_errors(curve, truth.rows_do_mean.to(curve))
    errors_pop = metrics.do_response_errors(curve, truth.do_mean.to(curve))
    samples = net.interventional(x_ref[: len(truth.do_samples)], {t: truth.mmd_value})[:, y]
    true_samples = truth.do_samples[:, y].to(samples)
    scale = true_samples.std().clamp_min(1e-8)
    cf = net.counterfactual(x_ref, {t: {"shift": cf_shift}})[:, y]
    out = {
        "curve": curve,
        "do_rmse": errors["rmse"],
        "do_rel_rmse": errors["rel_rmse"],
        "ate_error": errors["ate_error"],
        "do_rmse_pop": errors_pop["rmse"],
        "ate_error_pop": errors_pop["ate_error"],
        "mmd": metrics.mmd_rbf(samples[:, None] / scale, true_samples[:, None] / scale),
        "cf_rmse": metrics.rmse(cf, truth.x_cf[:, y].to(cf)),
    }
    if isinstance(net, StructuralMLP):
        out["composition"] = metrics.rmse(net.rollout(net.abduct(x_ref)), x_ref)
    return out


class InterveneModule(L.LightningModule):
    """Fits `net` (built in `setup` from the datamodule's graph) with `losses`; tests do-queries.

    Args:
        net: partial constructor of the network (`StructuralMLP` or `OutcomeMLP`); it receives the graph.
        losses: the weighted causal losses.
        optimizer: partial torch optimizer.
        name: label of the model in figures and tables (e.g. "M3").
    """

    def __init__(
        self,
        net: Callable[..., nn.Module],
        losses: CausalLosses,
        optimizer: Callable[..., torch.optim.Optimizer],
        name: str = "model",
    ) -> None:
        super().__init__()
        # Only plain values: partials in a checkpoint would not load with torch.load(weights_only=True).
        self.save_hyperparameters(logger=False, ignore=["net", "losses", "optimizer"])
        self.net_factory = net
        self.losses = losses
        self.optimizer_factory = optimizer
        self.name = name
        self.net: nn.Module | None = None
        self.graph: GraphInfo | None = None
        self.history: dict[str, list[float]] = {"train": [], "val": []}
        self._train_losses: list[float] = []
        self._history_logged = 0  # the last network forward-pass step whose interventions went to TensorBoard

    # --- wiring ---------------------------------------------------------------------------------------------
    def attach(self, datamodule: InterveneDataModule) -> None:
        """Build the network for the datamodule's graph and standardise with its training rows."""
        datamodule.setup("fit")
        self.graph = datamodule.graph
        if self.net is None:
            self.net = build_net(self.net_factory, self.graph)
        loc, scale = datamodule.scaler()
        self.net.set_scaler(loc, scale)

    def setup(self, stage: str) -> None:
        if self.net is None:
            self.attach(self.trainer.datamodule)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(params=self.parameters())

    def on_train_start(self) -> None:
        register_hp_metrics(self, HP_METRICS)

    @property
    def _datamodule(self) -> InterveneDataModule:
        return self.trainer.datamodule

    # --- losses ---------------------------------------------------------------------------------------------
    def _terms(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x, cut, x_cf, has_cf = batch
        pred, target, cut_k = self.net.fit_terms(x, cut)
        terms = {"intervention": intervention_loss(pred, target, cut_k)}
        structural = isinstance(self.net, StructuralMLP)
        if structural and self.losses.active("counterfactual") and has_cf.any():
            t = self.graph.treatment
            iv = Interventions(x.shape[1], {t: NodeIntervention("shift", self._datamodule.cf_shift)})
            pred_cf = self.net.counterfactual(x[has_cf], iv)
            changed = reachability(torch.as_tensor(self.graph.adjacency))[t].to(x.device).expand_as(pred_cf)
            changed = changed & (torch.arange(x.shape[1], device=x.device) != t)
            std = self.net.standardise
            terms["counterfactual"] = counterfactual_loss(std(pred_cf), std(x_cf[has_cf]), changed)
        if structural and self.losses.active("composition"):
            std = self.net.standardise
            terms["composition"] = composition_loss(std(self.net.rollout(self.net.abduct(x))), std(x))
        if structural and self.losses.active("sparsity"):
            terms["sparsity"] = self.net.dag.sparsity()
        if structural and self.losses.active("acyclicity") and self.net.dag.learnable:
            terms["acyclicity"] = self.net.dag.acyclicity()
        return terms

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        terms = self._terms(batch)
        loss = self.losses.combine(terms)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=len(batch[0]))
        self._train_losses.append(float(loss.detach()))
        return loss

    def on_train_epoch_end(self) -> None:
        if self._train_losses:
            self.history["train"].append(sum(self._train_losses) / len(self._train_losses))
        self._train_losses = []
        # The network's intervention records (networks built with record_history=True), new ones only.
        records = [r for r in getattr(self.net, "history", []) if r["step"] > self._history_logged]
        if records:
            log_text(self, "intervene/history", history_markdown(records))
            self._history_logged = records[-1]["step"]

    def _outcome_mse(self, x: Tensor) -> Tensor:
        """Observational fit: MSE of the outcome's conditional mean in the data's units."""
        pred, target, _ = self.net.fit_terms(x, torch.zeros_like(x, dtype=torch.bool))
        o = self.graph.outcome
        k = o if pred.shape[1] == x.shape[1] else 0
        return ((pred[:, k] - target[:, k]) * self.net.scale[o]).pow(2).mean()

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        # Observational rows only: early stopping on `val/loss` never sees interventional data.
        x = batch[0]
        loss = self._terms(batch)["intervention"]
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(x))
        self.log("val/obs_mse", self._outcome_mse(x), sync_dist=True, batch_size=len(x))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val = self.trainer.callback_metrics.get("val/loss")
        if val is not None:
            self.history["val"].append(float(val))
        held_out = getattr(self._datamodule, "val_do_set", None)
        if held_out is not None:
            # The fit's own objective on interventional rows it never trained on (task=finetune's monitor).
            batch = tuple(t.to(self.device) for t in held_out.tensors)
            self.log("val/do_loss", self._terms(batch)["intervention"], prog_bar=True, sync_dist=True)
        truth = getattr(self._datamodule, "truth", None)
        if truth is not None:
            # Against the validation rows' own exact curve, like test/do_rmse (see `score_answers`).
            curve = self.do_curve(self._datamodule.val_x.to(self.device), truth.grid)
            self.log("val/do_rmse", metrics.rmse(curve, truth.val_rows_do_mean.to(curve)), sync_dist=True)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x = batch[0]
        self.log("test/loss", self._terms(batch)["intervention"], sync_dist=True, batch_size=len(x))
        self.log("test/obs_mse", self._outcome_mse(x), sync_dist=True, batch_size=len(x))

    # --- queries --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def do_mean(self, x_ref: Tensor, node: int, values: Tensor, outcome: int | None = None) -> Tensor:
        """E[Y | do(node = v)] [V] for each v, averaging over the reference rows' abducted noise."""
        y = self.graph.outcome if outcome is None else outcome
        return torch.stack([self.net.interventional(x_ref, {node: float(v)})[:, y].mean() for v in values])

    def do_curve(self, x_ref: Tensor, grid: Tensor) -> Tensor:
        """The do-response curve of the graph's treatment on its outcome over `grid` [V]."""
        return self.do_mean(x_ref, self.graph.treatment, grid)

    def answers(self, x_ref: Tensor, truth: Any) -> dict[str, Tensor]:
        """Everything the model is scored on, against the simulator's `truth` (see `score_answers`)."""
        return score_answers(self.net, self.graph, x_ref, truth, self._datamodule.cf_shift)

    def on_test_epoch_end(self) -> None:
        truth = getattr(self._datamodule, "truth", None)
        if truth is None:
            return
        found = self.answers(self._datamodule.test_x.to(self.device), truth)
        curve = found.pop("curve")
        for key, value in found.items():
            self.log(f"test/{key}", value, sync_dist=True)
        obs = self.trainer.callback_metrics.get("test/obs_mse", torch.tensor(float("nan")))
        for key, value in (("do_rmse", found["do_rmse"]), ("cf_rmse", found["cf_rmse"]), ("mmd", found["mmd"])):
            self.log(f"hp/{key}", value, sync_dist=True)
        self.log("hp/obs_mse", obs, sync_dist=True)
        out_dir = plots.figure_dir(self.trainer)  # None under fast_dev_run
        if self.trainer.is_global_zero and out_dir is not None:
            names, t, y = self.graph.names, self.graph.treatment, self.graph.outcome
            fig = plots.do_response_figure(
                truth.grid.cpu(),
                truth.do_mean.cpu(),
                {self.name: curve.cpu()},
                xlabel=names[t],
                ylabel=f"E[{names[y]} | do({names[t]} = v)]",
                title=f"{self.name} do-response",
            )
            plots.log_figure(self.loggers, "test/do_response", fig, close=False)
            plots.save_figure(fig, out_dir / "do_response.png")
