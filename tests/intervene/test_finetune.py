"""Causal fine-tuning of an existing network: hooks at named sites, exactness, save/load, the finetune task."""

import copy
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from causal_engine.errors import UserError
from causal_engine.intervene.finetune import CausalWrapper, WrappedOutcomeNet, load_weights
from causal_engine.intervene.zoo import get_scm
from causal_engine.run import run


class SkipNet(nn.Module):
    """Not a Sequential: the block's output is added to its input (a skip connection) before the head."""

    def __init__(self, input_dim: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(input_dim, 6)
        self.block = nn.Sequential(nn.Linear(6, 6), nn.Tanh())
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))  # [B, 6]
        return self.head(h + self.block(h))  # [B, 1]


def _pretrained(seed: int = 0) -> SkipNet:
    torch.manual_seed(seed)
    return SkipNet().double()


def _x(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def test_wrapping_changes_nothing_without_interventions():
    net = _pretrained()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    wrapped = CausalWrapper(net, ["input", "block.1", "inp"])
    x = _x()
    assert torch.equal(wrapped(x), _pretrained()(x))
    assert {k.removeprefix("network."): v for k, v in wrapped.state_dict().items()}.keys() == before.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


def test_do_at_the_input_changes_only_the_touched_rows():
    wrapped, x = CausalWrapper(_pretrained()), _x()
    mask = torch.zeros(8, 3, dtype=torch.bool)
    mask[[1, 5], 2] = True
    values = torch.full((8, 3), -0.4, dtype=torch.float64)
    out = wrapped(x, {"input": (mask, values)})
    plain = _pretrained()
    assert torch.equal(out[[0, 2, 3, 4, 6, 7]], plain(x)[[0, 2, 3, 4, 6, 7]])  # untouched rows: bit-exact
    assert torch.equal(out, plain(torch.where(mask, values, x)))  # touched rows: the substituted input


def test_do_inside_a_skip_connection_replaces_the_unit_and_cuts_only_its_weights():
    """do(block output unit 2 = 0.7): the head sees h + block(h) with that unit replaced; the block's weights
    into unit 2 get exactly zero gradient, the skip path still carries gradient to `inp`, and every gradient
    equals the hand-built network's with the unit held constant."""
    wrapped, x = CausalWrapper(_pretrained(), ["block.1"]), _x()
    mask = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    values = torch.full((6,), 0.7, dtype=torch.float64)
    out = wrapped(x, {"block.1": (mask, values)})
    out.pow(2).sum().backward()
    got = _grads(wrapped.network)
    ref = _pretrained()
    h = torch.tanh(ref.inp(x))
    block = ref.block(h) * (1 - mask) + values * mask
    expected = ref.head(h + block)
    expected.pow(2).sum().backward()
    assert torch.equal(out, expected)
    assert torch.all(got["block.0.weight"][2] == 0) and got["block.0.bias"][2] == 0
    assert got["block.0.weight"][[0, 1, 3, 4, 5]].abs().sum() > 0 and got["inp.weight"].abs().sum() > 0
    assert all(torch.equal(got[name], p.grad) for name, p in ref.named_parameters())


def test_history_names_the_site():
    wrapped = CausalWrapper(_pretrained(), ["block.1"], record_history=True, max_history=2)
    for value in (0.1, 0.2, 0.3):
        wrapped(_x(), {"block.1": (torch.tensor([1.0, 0, 0, 0, 0, 0]), torch.full((6,), value))})
    assert [(r["step"], r["layer"], r["units"], r["rows"]) for r in wrapped.history] == [
        (2, "block.1", [0], 8),
        (3, "block.1", [0], 8),
    ]
    assert wrapped.history[-1]["values"] == pytest.approx([0.3])


def test_wrapped_network_saves_loads_and_deep_copies():
    wrapped, x = CausalWrapper(_pretrained(), ["block.1"]), _x()
    do = {"block.1": (torch.tensor([0.0, 1.0, 0, 0, 0, 0]), torch.full((6,), 2.0))}
    again = CausalWrapper(_pretrained(seed=5), ["block.1"])
    again.load_state_dict(wrapped.state_dict())
    assert torch.equal(again(x), wrapped(x)) and torch.equal(again(x, do), wrapped(x, do))
    twin = copy.deepcopy(wrapped)  # its hooks must apply the copy's interventions, not the original's
    assert torch.equal(twin(x, do), wrapped(x, do)) and not torch.equal(twin(x, do), twin(x))


def test_bad_sites_fail_with_the_choices():
    with pytest.raises(UserError, match=r"submodules: \['inp', 'block', 'block.0', 'block.1', 'head'\]"):
        CausalWrapper(_pretrained(), ["blocks.1"])
    with pytest.raises(UserError, match="sites are"):
        CausalWrapper(_pretrained())(_x(), {"head": (torch.ones(1), torch.zeros(1))})


def test_outcome_net_loads_plain_weights_and_answers_like_the_network(tmp_path):
    """A pretrained network loaded with weights_only=True into the outcome interface: its prediction is the
    network's on the standardised inputs, and do(x1 = v) substitutes x1 only."""
    scm = get_scm("nonlin_simpson")
    path = tmp_path / "net.pt"
    torch.save(_pretrained().float().state_dict(), path)
    wrapped = WrappedOutcomeNet(
        scm.adjacency, scm.treatment, scm.outcome, SkipNet, weights=str(path), names=scm.names, sites=["block.1"]
    )
    x = scm.sample(16, torch.Generator().manual_seed(0)).float()
    wrapped.set_scaler(x.mean(0), x.std(0))
    z = wrapped.standardise(x)[:, wrapped.inputs]
    with torch.no_grad():
        assert torch.equal(wrapped.predict(x), _pretrained().float()(z).squeeze(-1))
        cf = wrapped.counterfactual(x, {scm.names[scm.treatment]: 0.5})
    others = [j for j in range(x.shape[1]) if j not in (scm.treatment, scm.outcome)]
    assert torch.equal(cf[:, others], x[:, others]) and torch.all(cf[:, scm.treatment] == 0.5)
    state, scaler = load_weights(path)
    assert scaler == {} and state.keys() == _pretrained().state_dict().keys()
    with pytest.raises(UserError, match="does not fit the network"):
        WrappedOutcomeNet(scm.adjacency, scm.treatment, scm.outcome, lambda: SkipNet(5), weights=str(path))


def test_finetune_task_pretrains_then_starts_from_those_weights(compose):
    """With a step (lr 1e-30) too small to move a float32 weight, the fine-tuning stage must score exactly as
    the pretrained network it loaded (same test rows, same standardisation from the checkpoint)."""
    cfg = compose(["experiment=causal_finetune", "trainer.max_epochs=2", "task.pretrain_rows=64",
                   "task.interventional_rows=16", "data.n_test=50", "callbacks.progress_bar=null",
                   "model.optimizer.lr=1e-30", "model.optimizer.weight_decay=0.0"])  # fmt: skip
    metrics = run(cfg)
    for key in ("test/do_rmse", "test/cf_rmse", "test/obs_mse"):
        assert metrics[key] == metrics[f"pretrain/{key}"]
    state, scaler = load_weights(Path(cfg.paths.output_dir) / "pretrain" / "pretrained.pt")
    assert set(scaler) == {"loc", "scale"} and "layers.0.weight" in state  # the seed's CausalMLP inside


def test_finetune_task_moves_the_weights_when_it_learns(compose):
    cfg = compose(["experiment=causal_finetune", "trainer.max_epochs=2", "task.pretrain_rows=64",
                   "task.interventional_rows=16", "data.n_test=50", "callbacks.progress_bar=null",
                   "model.net.features=nondescendants"])  # fmt: skip
    metrics = run(cfg)
    assert metrics["test/do_rmse"] != metrics["pretrain/test/do_rmse"]


def test_finetune_stage_keeps_the_epoch_with_the_lowest_held_out_intervention_loss(compose):
    cfg = compose(["experiment=causal_finetune", "trainer.max_epochs=8", "task.pretrain_rows=64",
                   "task.interventional_rows=20", "data.n_test=50", "callbacks.progress_bar=null", "logger=csv",
                   "model.net.features=nondescendants"])  # fmt: skip
    run(cfg)
    stage = Path(cfg.paths.output_dir) / "finetune"
    (log,) = stage.rglob("metrics.csv")
    per_epoch = pd.read_csv(log).groupby("epoch").first()  # [epochs, metrics]
    (best,) = (stage / "checkpoints").glob("best-*.ckpt")
    epoch = int(best.name.split("-")[1])
    assert epoch == per_epoch["val/do_loss"].idxmin()
    # The observational val/loss, the pretraining stage's monitor, would have kept another epoch here.
    assert epoch != per_epoch["val/loss"].idxmin()
