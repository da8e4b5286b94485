"""The one intervention grammar: every form it accepts, and the error each mistake gets (with its config key)."""

from __future__ import annotations

import pytest
import torch

from causal_engine.interventions import (
    Intervention,
    InterventionError,
    parse_interventions,
    parse_named_interventions,
)

NAMES = ["x", "y", "z"]


def test_numbers_values_and_shifts_parse_to_plain_records_by_column():
    parsed = parse_interventions({"x": 1, "y": {"value": -2.5}, "z": {"shift": 0.5}}, NAMES)
    assert parsed == {0: Intervention("hard", 1.0), 1: Intervention("hard", -2.5), 2: Intervention("shift", 0.5)}


def test_python_only_forms_pass_through_unchanged():
    values, mask = torch.arange(4.0), torch.tensor([True, False, True, False])
    policy = lambda x: x[:, 0]  # noqa: E731
    parsed = parse_interventions({1: values, "z": {"value": policy, "mask": mask}}, NAMES)
    assert parsed[1].value is values and parsed[2].value is policy and parsed[2].mask is mask


def test_named_map_keeps_names_and_order():
    parsed = parse_named_interventions({"b": {"y": 1.0}, "a": {"x": {"shift": 2}}}, NAMES, "task.interventional")
    assert list(parsed) == ["b", "a"] and parsed["a"] == {0: Intervention("shift", 2.0)}
    assert parse_named_interventions(None, NAMES, "task.interventional") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"q": {"w": 1.0}}, r"task.counterfactual.q intervenes on 'w', which is not a variable of the data"),
        ({"q": {"x": "high"}}, r"task.counterfactual.q.x must be a finite number"),
        ({"q": {"x": True}}, r"task.counterfactual.q.x must be a finite number"),
        ({"q": {"x": float("nan")}}, r"task.counterfactual.q.x must be a finite number"),
        (
            {"q": {"x": {"shift": 1, "value": 2}}},
            r"task.counterfactual.q.x must give exactly one of 'value' or 'shift'",
        ),
        ({"q": {"x": {"scale": 2}}}, r"exactly one of 'value' or 'shift'"),
        ({"q": {"x": {"value": 1, "mask": [1, 0]}}}, r"task.counterfactual.q.x.mask must be a \[B\] bool tensor"),
        ({"q": {}}, r"task.counterfactual.q must map variables to interventions"),
        ({"q": {5: 1.0}}, r"intervened node 5 is outside 0..2"),
        ([1, 2], r"task.counterfactual must map a query name to interventions"),
    ],
)
def test_each_mistake_names_its_config_key(spec, message):
    with pytest.raises(InterventionError, match=message):
        parse_named_interventions(spec, NAMES, "task.counterfactual")
