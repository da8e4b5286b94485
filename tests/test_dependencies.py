"""`pip install causal-engine` installs the core dependencies only: everything a run can reach without asking for
a baseline must come from them, and a missing optional package must say what to install.

A module-level import of anything else (a baselines-extra package, or one that merely comes with another
dependency) fails for such a user, as scipy and pyyaml once did; so does a config's `_target_` (the tabular DML
learners' scikit-learn once did). Optional packages are imported inside the function that needs them, after
`errors.require_extra`."""

import ast
import re
import sys
from functools import cache
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import numpy as np
import pytest
import yaml

import causal_engine
from causal_engine.errors import MissingExtraError, require_extra
from causal_engine.graphs import structural_intervention_distance

SRC = Path(causal_engine.__file__).parent


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-")


@cache
def _core_packages() -> frozenset[str]:
    """The import names (top level) that causal-engine's core dependencies provide."""
    core = {_normalised(re.split(r"[<>=!~;\[ ]", r)[0]) for r in requires("causal-engine") if "extra ==" not in r}
    return frozenset(top for top, dists in packages_distributions().items() if {_normalised(d) for d in dists} & core)


def _is_core(module: str) -> bool:
    """Whether the top-level package of `module` is the standard library, causal_engine or a core dependency."""
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top == "causal_engine" or top in _core_packages()


def test_module_level_imports_are_core_dependencies():
    undeclared = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            undeclared += [f"{path.relative_to(SRC)}: {module}" for module in modules if not _is_core(module)]
    assert not undeclared, f"imported at module level but not a core dependency in pyproject.toml: {undeclared}"


def _targets(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return own + [t for value in node.values() for t in _targets(value)]
    if isinstance(node, list):
        return [t for value in node for t in _targets(value)]
    return []


def test_config_targets_are_core_dependencies():
    undeclared = [
        f"{path.relative_to(SRC)}: {target}"
        for path in sorted((SRC / "conf").rglob("*.yaml"))
        for target in _targets(yaml.safe_load(path.read_text()))
        if not _is_core(target)
    ]
    assert not undeclared, f"config targets outside the core dependencies in pyproject.toml: {undeclared}"


def test_a_missing_extra_names_the_package_and_the_install_command(monkeypatch):
    require_extra("nothing", "json", "numpy")  # installed: no error
    # what a core-only install sees: gadjid cannot be found
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "gadjid" else object())
    with pytest.raises(
        MissingExtraError, match=r"structural intervention distance.*gadjid.*causal-engine\[baselines\]"
    ):
        structural_intervention_distance(np.eye(3, k=1), np.eye(3, k=1))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(MissingExtraError, match="causal-learn"):  # the distribution, not the import name
        require_extra("PC", "causallearn")
