"""The seed's API: `CausalMLP` with do(h = v) at any layer, its history, and the four `CausalLosses` terms."""

import re
from pathlib import Path

import pytest
import torch

from causal_engine import CausalLosses, CausalMLP
from causal_engine.errors import UserError
from causal_engine.intervene.losses import consistency_loss, counterfactual_loss, intervention_loss, sparsity_loss
from causal_engine.run import run

README = Path(__file__).resolve().parents[2] / "README.md"


def _seed_block() -> str:
    """The README's Python block that starts with the seed's import line."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if "from causal_engine import CausalMLP, CausalLosses" in b)


def _model(**kwargs) -> CausalMLP:
    torch.manual_seed(0)
    return CausalMLP(input_dim=3, hidden_dims=[5, 4], output_dim=2, activation="tanh", **kwargs).double()


def _params_grads(model: CausalMLP) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def test_seed_basic_usage_runs_verbatim_and_do_x2_blocks_its_gradient():
    scope: dict = {}
    exec(_seed_block(), scope)
    assert scope["y_pred"].shape == (10, 1)
    model, x = scope["model"], scope["x"].requires_grad_(True)
    model(x, interventions={0: (scope["do_mask"], scope["do_values"])}).sum().backward()
    assert torch.all(x.grad[:, 1] == 0)  # exactly zero: x2 was replaced by a constant
    assert torch.all(x.grad[:, [0, 2]].abs().sum(0) > 0)
    assert isinstance(scope["causal_loss"], CausalLosses)


def test_input_do_zeroes_exactly_the_replaced_entries_gradient_and_leaves_the_rest_unchanged():
    """Per-row do on the inputs: the masked (row, column) entries get zero gradient; every other entry gets
    the gradient the plain network gives at the substituted input (so unintervened rows are unchanged)."""
    model = _model()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.zeros(6, 3, dtype=torch.bool)
    mask[:3, 1] = True
    mask[4, 2] = True
    values = torch.full((6, 3), 0.5, dtype=torch.float64)
    x_do = x.clone().requires_grad_(True)
    y_do = model(x_do, {0: (mask, values)})
    y_do.pow(2).sum().backward()
    substituted = torch.where(mask, values, x).requires_grad_(True)
    y_sub = model(substituted)
    y_sub.pow(2).sum().backward()
    assert torch.equal(y_do, y_sub)
    assert torch.all(x_do.grad[mask] == 0)
    assert torch.equal(x_do.grad[~mask], substituted.grad[~mask])
    assert torch.all(x_do.grad[~mask] != 0)


def test_hidden_do_cuts_the_weights_into_the_replaced_unit_and_nothing_else():
    """do(h1[:, 2] = 1.5) on every row: the first layer's row 2 (weights and bias that computed the unit) gets
    exactly zero gradient; every gradient equals the hand-built network with that unit held constant."""
    model = _model()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mask = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    values = torch.tensor([0.0, 0.0, 1.5, 0.0, 0.0], dtype=torch.float64)
    model(x, {1: (mask, values)}).pow(2).sum().backward()
    grads = _params_grads(model)
    model.zero_grad()
    l0, l1, l2 = model.layers
    h1 = torch.tanh(l0(x)) * (1 - mask) + values * mask  # the replaced unit as a constant, by hand
    l2(torch.tanh(l1(h1))).pow(2).sum().backward()
    assert torch.all(grads[0][2] == 0) and grads[1][2] == 0  # weights and bias into the replaced unit
    assert torch.all(grads[0][[0, 1, 3, 4]].abs().sum(1) > 0)  # the other units of layer 1 still learn
    for got, expected in zip(grads, _params_grads(model), strict=True):
        assert torch.equal(got, expected)


def test_per_row_hidden_do_leaves_unintervened_rows_gradient_untouched():
    model = _model()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 1] = True  # layer 2 (width 4), row 0 only
    model(x[1:], {2: (mask[1:], torch.zeros(3, 4, dtype=torch.float64))}).sum().backward()
    rest = _params_grads(model)  # rows 1..3 carry no intervention
    model.zero_grad()
    model(x, {2: (mask, torch.zeros(4, 4, dtype=torch.float64))}).sum().backward()
    with_row0 = _params_grads(model)
    model.zero_grad()
    model(x[:1], {2: (mask[:1], torch.zeros(1, 4, dtype=torch.float64))}).sum().backward()
    row0 = _params_grads(model)
    for total, a, b in zip(with_row0, rest, row0, strict=True):
        assert torch.allclose(total, a + b, atol=1e-12, rtol=0)
    assert torch.all(row0[2][1] == 0) and row0[3][1] == 0  # row 0's replaced unit: no gradient into it


def test_history_records_what_where_and_when_and_is_bounded():
    model = _model(record_history=True, max_history=3)
    x = torch.zeros(4, 3, dtype=torch.float64)
    row_mask = torch.tensor([[0, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.bool)
    model(x, {0: (row_mask, torch.full((4, 3), 2.0, dtype=torch.float64))})  # step 1
    model(x)  # step 2: nothing intervened, nothing recorded
    model(x, {2: (torch.tensor([1.0, 0, 0, 1]), torch.tensor([3.0, 0, 0, -1]))})  # step 3
    assert model.history == [
        {"step": 1, "layer": 0, "units": [1], "rows": 2, "values": [2.0]},
        {"step": 3, "layer": 2, "units": [0, 3], "rows": 4, "values": [3.0, -1.0]},
    ]
    model(x, {0: (torch.tensor([1.0, 0, 0]), torch.tensor([7.0, 0, 0])), 1: (torch.ones(5), torch.zeros(5))})
    assert len(model.history) == 3  # bounded: the oldest record (step 1) is gone
    assert [(r["step"], r["layer"]) for r in model.history] == [(3, 2), (4, 0), (4, 1)]
    assert _model().history == []  # off by default


@pytest.mark.parametrize(
    ("interventions", "message"),
    [
        ({3: (torch.ones(4), torch.zeros(4))}, r"layer\(s\) \[3\]"),
        ({0: (torch.ones(4), torch.zeros(4))}, "do_mask has shape"),
        ({0: (torch.ones(2, 3), torch.zeros(2, 3))}, r"\[5, 3\]"),
        ({0: (torch.full((3,), 0.5), torch.zeros(3))}, "0/1"),
    ],
)
def test_bad_interventions_fail_with_the_fix(interventions, message):
    with pytest.raises(UserError, match=message):
        _model().float()(torch.zeros(5, 3), interventions)


def test_each_loss_matches_a_hand_computation():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.zeros(2, 2)
    do_mask = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    do_values = torch.tensor([[0.0, 1.5], [0.0, 0.0]])
    # intervention: node 0 over both rows (1 + 9) / 2 = 5, node 1 over its intact row 16; mean 10.5
    assert intervention_loss(pred, target, do_mask.bool()) == 10.5
    assert consistency_loss(pred, do_mask, do_values) == 0.25  # (2 − 1.5)², the one intervened entry
    assert consistency_loss(pred, torch.zeros(2), torch.zeros(2)) == 0  # nothing set
    pred_cf, target_cf = torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)
    assert counterfactual_loss(pred_cf, target_cf) == 2.5  # (1 + 4) / 2
    assert counterfactual_loss(pred_cf, target_cf, torch.tensor([[False, True]])) == 4.0
    weights = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert sparsity_loss(weights) == 1.5  # (1 + 2 + 3 + 0) / 4
    losses = CausalLosses(
        intervention_weight=1.0, counterfactual_weight=2.0, consistency_weight=3.0, sparsity_weight=4.0
    )
    kwargs = {"do_mask": do_mask, "do_values": do_values, "pred_cf": pred_cf, "target_cf": target_cf}
    terms = losses.terms(pred, target, sparse_weights=weights, **kwargs)
    assert {k: float(v) for k, v in terms.items()} == {
        "intervention": 10.5,
        "consistency": 0.25,
        "counterfactual": 2.5,
        "sparsity": 1.5,
    }
    assert losses(pred, target, sparse_weights=weights, **kwargs) == 10.5 + 2 * 2.5 + 3 * 0.25 + 4 * 1.5


def test_consistency_is_positive_on_an_untrained_network_and_falls_with_training():
    """A CausalMLP predicting the three variables under do(x2 = 0.5) must learn to output 0.5 for x2."""
    torch.manual_seed(0)
    model = CausalMLP(input_dim=3, hidden_dims=[16, 16], output_dim=3)
    losses = CausalLosses(intervention_weight=1.0, consistency_weight=1.0)
    do_mask, do_values = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.5, 0.0])
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first = float(consistency_loss(model(x, {0: (do_mask, do_values)}), do_mask, do_values))
    assert first > 0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):  # a plain PyTorch loop
        optimizer.zero_grad()
        pred = model(x, interventions={0: (do_mask, do_values)})
        loss = losses(pred, x, do_mask=do_mask, do_values=do_values)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert float(consistency_loss(model(x, {0: (do_mask, do_values)}), do_mask, do_values)) < first / 10


def test_losses_keep_their_keywords_and_refuse_missing_inputs():
    old = CausalLosses(
        intervention_weight=1.0,
        counterfactual_weight=0.5,
        composition_weight=0.1,
        sparsity_weight=0.0,
        acyclicity_weight=0.0,
    )
    assert old.combine({"intervention": torch.tensor(2.0), "composition": torch.tensor(1.0)}) == 2.1
    with pytest.raises(UserError, match="sparse_weights"):
        CausalLosses(sparsity_weight=1.0)(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(UserError, match="consistency_weight"):
        CausalLosses(consistency_weight=-1.0)


def test_the_lightning_module_logs_the_history_as_text_to_tensorboard(compose):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose(["experiment=structural_mlp", "model=mlp", "model.net.record_history=true", "data.n_train=64",
                   "data.n_test=50", "trainer.max_epochs=1", "callbacks.progress_bar=null"])  # fmt: skip
    run(cfg)
    events = sorted(Path(cfg.paths.output_dir).rglob("events.out.tfevents.*"))
    texts = []
    for path in events:
        acc = EventAccumulator(str(path), size_guidance={"tensors": 0})
        acc.Reload()
        if "intervene/history/text_summary" in acc.Tags()["tensors"]:
            texts += [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("intervene/history/text_summary")]
    assert texts, f"no intervention history in {events}"
    assert "| step | layer | units | rows | mean set values |" in texts[0]
    assert re.search(r"\| \d+ \| 0 \| \[1\] \| \d+ \|", texts[0])  # do(x1) at the inputs (x1 is input 1)
