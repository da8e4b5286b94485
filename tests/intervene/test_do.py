"""The do-operator: cut edges, descendants, gradients, null intervention, exact linear counterfactuals."""

import torch

from causal_engine.graphs import descendants
from causal_engine.intervene.dag import DAGRewiring
from causal_engine.intervene.do import CausalUnit, Interventions, NodeIntervention
from causal_engine.intervene.losses import CausalLosses, composition_loss, counterfactual_loss, intervention_loss
from causal_engine.intervene.models import OutcomeMLP, StructuralMLP

# p -> x, p -> c, x -> y, c -> y : p is a parent of x with another child (c).
NAMES = ["p", "x", "c", "y"]
ADJ = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float32)


def _model(seed: int = 0, **kwargs) -> StructuralMLP:
    torch.manual_seed(seed)
    return StructuralMLP(ADJ, NAMES, hidden_dims=(8,), **kwargs).double()


def _data(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_do_cuts_exactly_the_incoming_edges():
    rewiring = DAGRewiring(ADJ)
    cut = torch.tensor([[False, True, False, False]])
    masked = rewiring.masked(cut)[0]
    expected = ADJ.clone()
    expected[:, 1] = 0  # only the edge into x (p -> x) goes; x -> y stays
    assert torch.equal(masked, expected)


def test_intervened_node_ignores_its_parents_and_children_still_see_it():
    model, x = _model(), _data()
    x_perturbed = x.clone()
    x_perturbed[:, 0] += 5.0  # move p
    out_a = model(x, {"x": 0.5})
    out_b = model(x_perturbed, {"x": 0.5})
    assert torch.all(out_a[:, 1] == 0.5) and torch.all(out_b[:, 1] == 0.5)  # consistency: do(x=v) => x=v
    assert not torch.allclose(out_a[:, 2], out_b[:, 2])  # c still listens to p


def test_descendants_change_and_non_descendants_do_not():
    model, x = _model(), _data()
    with torch.no_grad():
        cf = model.counterfactual(x, {"x": {"shift": 1.0}})
    assert descendants(ADJ)[1].nonzero().flatten().tolist() == [3]
    assert torch.equal(cf[:, [0, 2]], x[:, [0, 2]])  # p and c: non-descendants, bit-exact
    assert torch.allclose(cf[:, 1], x[:, 1] + 1.0)
    assert (cf[:, 3] - x[:, 3]).abs().min() > 0  # y is a descendant and moves


def test_null_intervention_reproduces_the_factual():
    model, x = _model(), _data()
    with torch.no_grad():
        assert torch.allclose(model.rollout(model.abduct(x), None), x, atol=1e-12, rtol=0)  # recomputed
        assert torch.equal(model.counterfactual(x, None), x)  # copied: nothing is reached by an intervention
        assert float(composition_loss(model.counterfactual(x, {}), x)) < 1e-24


def test_hard_do_blocks_gradient_into_the_cut_mechanism_but_parent_keeps_other_children():
    """Loss on the rollout under do(x = v): x's mechanism gets zero gradient, p's mechanism still learns
    through c (its other child), and the cut node's own term is left out of the loss."""
    model, x = _model(), _data()
    iv = Interventions.parse({"x": 0.5}, NAMES)
    noise = model.abduct(x).detach()
    rolled = model.rollout(noise, iv)
    cut = iv.cut_mask(len(x))
    loss = intervention_loss(model.standardise(rolled), model.standardise(x + 0.3), cut)
    loss.backward()
    w0 = model.mechanisms.weights[0].grad  # [D(node), D(input), H]
    b_last = model.mechanisms.biases[-1].grad  # [D(node), 1]
    assert torch.all(w0[1] == 0) and torch.all(b_last[1] == 0)  # x's mechanism: cut, no gradient
    assert b_last[0].abs().sum() > 0  # p (root) learns from c and y
    assert w0[2].abs().sum() > 0 and w0[3].abs().sum() > 0


def test_gradient_does_not_flow_from_intervened_value_to_parent():
    """Only x's term in the loss: with do(x) the parent p gets exactly zero gradient through x."""
    model, x = _model(), _data()
    noise = model.abduct(x).detach()
    rolled = model.rollout(noise, {"x": 0.5})
    rolled[:, 1].sum().backward()
    assert all(torch.all(w.grad == 0) for w in model.mechanisms.weights if w.grad is not None)
    model.zero_grad()
    rolled = model.rollout(noise, {"x": {"shift": 0.5}})  # soft: mechanism kept, gradient flows to p
    rolled[:, 1].sum().backward()
    assert model.mechanisms.biases[-1].grad[0].abs().sum() > 0


def test_causal_unit_per_row_mask_conditional_value_and_history():
    unit = CausalUnit(record_history=True)
    natural = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    context = torch.tensor([[0.0, 1.0], [0.0, 2.0], [5.0, 3.0]])
    mask = torch.tensor([True, False, True])
    iv = Interventions(2, {1: NodeIntervention("hard", lambda ctx: 2 * ctx[:, 0], mask)})
    out = unit.apply(natural, 1, context, iv)
    assert torch.equal(out, torch.tensor([0.0, 2.0, 10.0]))
    out.sum().backward()
    assert torch.equal(natural.grad, torch.tensor([0.0, 1.0, 0.0]))  # only the untouched row
    assert list(unit.history) == [{"step": 0, "layer": 0, "units": [1], "rows": 2, "values": [5.0]}]


def test_per_row_interventions_from_batch_tensors():
    model, x = _model(), _data(4)
    mask = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    values = torch.full((4, 4), 7.0, dtype=torch.float64)
    iv = Interventions.from_tensors(mask, values)
    assert torch.equal(iv.cut_mask(4), mask)
    with torch.no_grad():
        out = model.counterfactual(x, iv)
    assert torch.equal(out[mask], values[mask])
    assert torch.allclose(out[1], x[1]) and torch.allclose(out[3], x[3])


def test_counterfactual_exact_on_linear_additive_scm():
    """Linear SCM p -> x -> y, p -> c -> y with known weights: x' = x + 1 gives y' = y + 2 exactly."""
    torch.manual_seed(0)
    model = StructuralMLP(ADJ, NAMES, hidden_dims=()).double()
    coef = torch.zeros(4, 4, dtype=torch.float64)  # coef[j, i]: weight of parent i in node j
    coef[1, 0], coef[2, 0], coef[3, 1], coef[3, 2] = 0.8, -1.5, 2.0, 0.5
    with torch.no_grad():
        model.mechanisms.weights[0].copy_(coef[:, :, None])
        model.mechanisms.biases[0].zero_()
    noise = torch.randn(64, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = torch.zeros(64, 4, dtype=torch.float64)
    x[:, 0] = noise[:, 0]
    x[:, 1] = 0.8 * x[:, 0] + noise[:, 1]
    x[:, 2] = -1.5 * x[:, 0] + noise[:, 2]
    x[:, 3] = 2.0 * x[:, 1] + 0.5 * x[:, 2] + noise[:, 3]
    with torch.no_grad():
        cf = model.counterfactual(x, {"x": {"shift": 1.0}})
        hard = model.counterfactual(x, {"x": 0.0})
    expected = x.clone()
    expected[:, 1] += 1.0
    expected[:, 3] += 2.0
    assert torch.allclose(cf, expected, atol=1e-12)
    assert torch.allclose(hard[:, 3], x[:, 3] - 2.0 * x[:, 1], atol=1e-12)


def test_losses_are_zero_when_predictions_are_perfect():
    target = torch.randn(8, 3)
    cut = torch.zeros(8, 3, dtype=torch.bool)
    cut[:4, 1] = True
    wrong_on_cut = target.clone()
    wrong_on_cut[cut] += 10.0  # errors on intervened entries are ignored
    assert intervention_loss(wrong_on_cut, target, cut) == 0
    assert counterfactual_loss(target, target) == 0
    assert composition_loss(target, target) == 0
    losses = CausalLosses(1.0, 1.0, 1.0)
    terms = {"intervention": intervention_loss(target, target, cut), "composition": torch.tensor(0.0)}
    assert losses.combine(terms) == 0
    assert intervention_loss(target + 1, target, cut) == 1.0


def test_outcome_mlp_features_and_substitution():
    m1 = OutcomeMLP(ADJ, treatment=1, outcome=3, features="all", names=NAMES)
    m2 = OutcomeMLP(ADJ, treatment=1, outcome=3, features="nondescendants", names=NAMES)
    assert m1.inputs.tolist() == [0, 1, 2] and m2.inputs.tolist() == [0, 1, 2]
    m_chain = OutcomeMLP(
        torch.tensor([[0, 1, 0], [0, 0, 1], [0, 0, 0]]), treatment=0, outcome=2, features="nondescendants"
    )
    assert m_chain.inputs.tolist() == [0]
    x = _data(5).float()
    with torch.no_grad():
        cf = m1.counterfactual(x, {"x": 0.5})
    assert torch.all(cf[:, 1] == 0.5) and torch.equal(cf[:, [0, 2]], x[:, [0, 2]])


def test_learnable_adjacency_penalties():
    rewiring = DAGRewiring(torch.ones(3, 3) - torch.eye(3), learnable=True)
    assert rewiring.acyclicity() > 0  # the full graph is cyclic
    rewiring_dag = DAGRewiring(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), learnable=True, init_logit=10.0)
    assert abs(rewiring_dag.acyclicity().item()) < 1e-5
    (rewiring.sparsity() + rewiring.acyclicity()).backward()
    assert rewiring.logits.grad.abs().sum() > 0


def test_learnable_graph_rollout_reads_only_edges_it_counts():
    torch.manual_seed(0)
    full = torch.ones(4, 4) - torch.eye(4)
    model = StructuralMLP(torch.triu(full), NAMES, hidden_dims=(8,), learnable_graph=True).double()
    with torch.no_grad():
        model.dag.logits.fill_(-5.0)
        model.dag.logits[0, 1] = 5.0  # only p -> x survives the 0.5 threshold
    x = _data()
    with torch.no_grad():
        assert model.dag.generations() == [[0, 2, 3], [1]]
        assert torch.allclose(model.rollout(model.abduct(x)), x, atol=1e-9)  # null intervention, soft graph
