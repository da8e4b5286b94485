"""Causal fine-tuning of an existing network: CausalUnits inserted by forward hooks, at named sites.

`CausalWrapper(network, sites=["input", "block.0"])` leaves `network` as it is (same modules, same state
dict under `network.`) and adds do(h = v) at each site: "input" is the network's first positional
argument, any other name is a submodule (`dict(network.named_modules())`) whose output is replaced. So any
`nn.Module` works, whatever its wiring (skip connections, shared blocks): a replaced activation feeds every
consumer of that module's output, and the modules that computed it get no gradient through it. A site's
tensor [B, ...] is addressed as [B, W] with W its flattened feature size.

`WrappedOutcomeNet` puts a wrapped network behind the outcome-regressor interface (`OutcomeNet`), so the
`InterveneModule` trains and scores it like any other model: `model=causal_finetune` loads the network's
weights (`torch.load(weights_only=True)`, a plain state dict or a causal-engine checkpoint) and fine-tunes
it on the data's interventional rows with `CausalLosses`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from causal_engine.errors import UserError
from causal_engine.intervene.data import InterveneDataModule
from causal_engine.intervene.do import CausalUnit
from causal_engine.intervene.models import OutcomeNet
from causal_engine.intervene.module import InterveneModule
from causal_engine.train import best_checkpoint, build_trainer, collect_metrics

INPUT = "input"
SiteInterventions = Mapping[str, tuple[Tensor, Tensor]]


class CausalWrapper(nn.Module):
    """`network` with a do-operator at each of `sites` ("input" or submodule names), applied by hooks.

    `wrapper(x, {"block.0": (mask, values)})` runs the network with those units replaced; with no
    interventions it returns exactly `network(x)`. `history` as in `CausalUnit` (layer = the site name).
    """

    def __init__(
        self,
        network: nn.Module,
        sites: Sequence[str] = (INPUT,),
        record_history: bool = False,
        max_history: int = 1000,
    ) -> None:
        super().__init__()
        self.network = network
        self.unit = CausalUnit(record_history, max_history)
        self.sites = list(dict.fromkeys(sites))
        self._active: dict[str, tuple[Tensor, Tensor]] = {}
        modules = dict(network.named_modules())
        for site in self.sites:
            if site == INPUT:
                network.register_forward_pre_hook(self._input_hook)
            elif site in modules and site != "":
                # a partial of a bound method (not a closure), so a deep copy's hooks call the copy
                modules[site].register_forward_hook(partial(self._output_hook, site))
            else:
                raise UserError(
                    f"causal site {site!r} is neither {INPUT!r} nor a submodule of {type(network).__name__}; "
                    f"submodules: {[name for name in modules if name][:30]}"
                )

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.unit.history)

    def _replace(self, site: str, h: Tensor) -> Tensor:
        mask, values = self._active[site]
        flat = h.flatten(1)  # [B, W]
        return self.unit(flat, mask, values, layer=site).view_as(h)

    def _input_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if INPUT not in self._active:
            return None
        return (self._replace(INPUT, args[0]), *args[1:])

    def _output_hook(self, site: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> Tensor | None:
        if site not in self._active:
            return None
        if not isinstance(output, Tensor):
            raise UserError(f"causal site {site!r} returns {type(output).__name__}, not a tensor: pick a submodule")
        return self._replace(site, output)

    def forward(self, x: Tensor, interventions: SiteInterventions | None = None, *args: Any, **kwargs: Any) -> Tensor:
        """network(x, *args, **kwargs) with do(h_site = v) at each site given (mask and values [W] or [B, W])."""
        interventions = dict(interventions or {})
        unknown = sorted(set(interventions) - set(self.sites))
        if unknown:
            raise UserError(f"interventions at {unknown}, but the wrapper's sites are {self.sites}")
        self.unit.step += 1
        self._active = interventions
        try:
            return self.network(x, *args, **kwargs)
        finally:
            self._active = {}


def load_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the network's state dict, the scaler {loc, scale} or {}) from `path`, read with weights_only=True.

    A plain state dict is the network's own; a causal-engine checkpoint (a `state_dict` whose keys start
    with `net.net.network.`) also carries the standardisation it was trained with.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model.net.weights={str(path)!r} does not exist: give a state dict (.pt) or a checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in state:
        return dict(state), {}
    inner = state["state_dict"]
    prefix = "net.net.network."
    weights = {k[len(prefix) :]: v for k, v in inner.items() if k.startswith(prefix)}
    if not weights:
        raise UserError(f"checkpoint {path} holds no wrapped network (no '{prefix}*' keys): give its state dict")
    return weights, {k: inner[f"net.{k}"] for k in ("loc", "scale") if f"net.{k}" in inner}


def _build_network(network: nn.Module | Callable[..., nn.Module], input_dim: int) -> nn.Module:
    """A module as given, or a factory called with `input_dim`/`output_dim` when its signature takes them."""
    if isinstance(network, nn.Module):
        return network
    params = inspect.signature(network).parameters
    sizes = {"input_dim": input_dim, "output_dim": 1}
    return network(**{k: v for k, v in sizes.items() if k in params})


class WrappedOutcomeNet(OutcomeNet):
    """An existing network as the outcome regressor of the graph's outcome, with CausalUnits at `sites`.

    Args:
        network: the network (a module, or a factory given `input_dim`/`output_dim` if it takes them); it
            maps the standardised inputs [B, I] to the standardised outcome [B, 1].
        weights: its pretrained weights (see `load_weights`); None keeps its initialisation.
        sites: where to insert CausalUnits ("input" is always one: do(X = v) on the data goes there).
        features, names, adjacency, treatment, outcome: as for `OutcomeNet`.
        standardise: False feeds the data's own units (a network trained on raw data).
    """

    def __init__(
        self,
        adjacency: Tensor | np.ndarray,
        treatment: int,
        outcome: int,
        network: nn.Module | Callable[..., nn.Module],
        weights: str | None = None,
        sites: Sequence[str] = (INPUT,),
        features: Literal["all", "nondescendants"] = "all",
        names: Sequence[str] | None = None,
        standardise: bool = True,
        record_history: bool = False,
        max_history: int = 1000,
    ) -> None:
        super().__init__(adjacency, treatment, outcome, features, names)
        module = _build_network(network, len(self.inputs))
        self.scaler_fixed = not standardise
        if weights is not None:
            state, scaler = load_weights(weights)
            try:
                module.load_state_dict(state)
            except RuntimeError as err:
                raise UserError(f"model.net.weights={weights!r} does not fit the network: {err}") from err
            if scaler:
                super().set_scaler(scaler["loc"], scaler["scale"])
                self.scaler_fixed = True  # keep the standardisation the weights were trained with
        self.net = CausalWrapper(module, [INPUT, *sites], record_history, max_history)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.net.history

    def set_scaler(self, loc: Tensor, scale: Tensor) -> None:
        """Standardise with the data's scaler, unless the weights brought theirs or `standardise=False`."""
        if not self.scaler_fixed:
            super().set_scaler(loc, scale)

    def _forward(self, z: Tensor, do: tuple[Tensor, Tensor] | None) -> Tensor:
        return self.net(z, None if do is None else {INPUT: do})


# What a stage that holds out interventional rows monitors (checkpoint and early stopping): their intervention
# loss. The observational val/loss would reward the epoch least changed by fine-tuning on do rows.
DO_MONITOR = "val/do_loss"


def _held_out(do: Tensor, fraction: float) -> Tensor:
    """[N] bool: the last `fraction` (at least one) of the interventional rows `do` [N] bool (i.i.d. draws)."""
    rows = do.nonzero().flatten()
    n_val = max(1, round(fraction * len(rows)))
    if not 1 <= n_val < len(rows):
        raise UserError(
            f"task.val_fraction={fraction} of {len(rows)} interventional rows holds out {n_val}; fine-tuning needs "
            f"at least one row to validate on and one to fit: raise task.interventional_rows or task.val_fraction"
        )
    held_out = torch.zeros_like(do)
    held_out[rows[-n_val:]] = True
    return held_out


def _train_rows(datamodule: InterveneDataModule, keep: Tensor, held_out: Tensor) -> InterveneDataModule:
    """The datamodule (set up) with its training rows restricted to `keep` [N] bool without `held_out` [N] bool,
    which become its `val_do_set` (None when there are none)."""
    datamodule.setup("fit")
    tensors = datamodule.train_set.tensors
    datamodule.val_do_set = TensorDataset(*(t[held_out] for t in tensors)) if held_out.any() else None
    datamodule.train_set = TensorDataset(*(t[keep & ~held_out] for t in tensors))
    return datamodule


def fit_and_test(
    cfg: DictConfig,
    model_cfg: DictConfig,
    n_obs: int,
    n_int: int,
    keep: Callable[[Tensor], Tensor],
    stage: str,
    val_fraction: float = 0.0,
) -> tuple[InterveneModule, dict[str, float], L.Trainer]:
    """Fit `model_cfg` on the training rows `keep(row_is_interventional)` selects, out of n_obs observational
    and n_int interventional rows; test the best checkpoint (the in-memory weights if none was written).

    With `val_fraction` > 0 that share of the interventional rows is held out of the fit and the stage monitors
    their intervention loss (`DO_MONITOR`) instead of `cfg.monitor`. Returns the module, holding the tested
    weights, its metrics and the trainer."""
    full: InterveneDataModule = instantiate(
        cfg.data, n_train=n_obs + n_int, interventional_fraction=n_int / (n_obs + n_int), _convert_="all"
    )
    module: InterveneModule = instantiate(model_cfg, _convert_="all")
    module.attach(full)  # standardise with every observational row, whichever rows this stage trains on
    do = full.train_set.tensors[1].any(1)  # [N] interventional rows
    held_out = _held_out(do, val_fraction) if val_fraction > 0 else torch.zeros_like(do)
    datamodule = _train_rows(full, keep(do), held_out)
    if held_out.any():
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        OmegaConf.update(cfg, "monitor", DO_MONITOR)  # the callbacks' `${monitor}`
    trainer = build_trainer(cfg, subdir=stage)
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, ckpt_path=best_checkpoint(trainer), verbose=False)
    return module, collect_metrics(trainer), trainer


def finetune(
    cfg: DictConfig,
    pretrain_rows: int = 1000,
    interventional_rows: int = 100,
    finetune_on: Literal["interventional", "all"] = "interventional",
    val_fraction: float = 0.2,
) -> dict[str, float]:
    """Pretrain `cfg.model`'s network on `pretrain_rows` observational rows (skipped when `model.net.weights`
    is given), then fine-tune it from those weights on `interventional_rows` do(X) rows (`finetune_on=all`:
    on the observational rows too). Both stages are tested on the same reference rows; the fine-tuned
    model's metrics are returned as they are, the pretrained one's under `pretrain/`.

    Pretraining stops and keeps its weights by the observational `cfg.monitor`; fine-tuning by the intervention
    loss on `val_fraction` of the do rows, held out of its fit (`DO_MONITOR`).

    The data config's `n_train` and `interventional_fraction` are set from the two row counts; the rows
    are the ones `data` would draw for n_train = pretrain_rows + interventional_rows.
    """
    if pretrain_rows < 1 or interventional_rows < 1:
        raise UserError(
            f"task.pretrain_rows ({pretrain_rows}) and task.interventional_rows ({interventional_rows}) must be >= 1"
        )
    if finetune_on not in ("interventional", "all"):
        raise UserError(f"task.finetune_on must be 'interventional' or 'all', got {finetune_on!r}")
    metrics: dict[str, float] = {}
    model_cfg = cfg.model
    if model_cfg.net.get("weights") is None:
        module, pretrained, trainer = fit_and_test(
            cfg, model_cfg, pretrain_rows, interventional_rows, lambda do: ~do, "pretrain"
        )
        metrics.update({f"pretrain/{k}": v for k, v in pretrained.items()})
        weights = Path(cfg.paths.output_dir) / "pretrain" / "pretrained.pt"
        if trainer.is_global_zero:
            weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": module.state_dict()}, weights)  # the tested weights, in checkpoint form
        trainer.strategy.barrier()  # every rank loads the file below
        model_cfg = OmegaConf.merge(model_cfg, {"net": {"weights": str(weights)}})
    keep = (lambda do: do) if finetune_on == "interventional" else torch.ones_like
    _, finetuned, _ = fit_and_test(
        cfg, model_cfg, pretrain_rows, interventional_rows, keep, "finetune", val_fraction=val_fraction
    )
    metrics.update(finetuned)
    return metrics
