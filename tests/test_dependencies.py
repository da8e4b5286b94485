"""Every third-party package the library imports at module level is one of its core dependencies.

`pip install causal-engine` installs only those; a module-level import of anything else (a baselines-extra
package, or one that merely happens to come with another dependency) makes the import fail for such a user,
as scipy and pyyaml once did. Optional packages are imported inside the function that needs them."""

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import causal_engine

SRC = Path(causal_engine.__file__).parent


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-")


def test_module_level_imports_are_core_dependencies():
    core = {_normalised(re.split(r"[<>=!~;\[ ]", r)[0]) for r in requires("causal-engine") if "extra ==" not in r}
    distributions = packages_distributions()
    undeclared = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "causal_engine":
                    continue
                if not {_normalised(d) for d in distributions.get(top, [])} & core:
                    undeclared.append(f"{path.relative_to(SRC)}: {module}")
    assert not undeclared, f"imported at module level but not a core dependency in pyproject.toml: {undeclared}"
