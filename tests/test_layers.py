"""The package is layered: every import points down (or within its own system), never up or sideways.

    plumbing (train, tables, interventions, metrics, plots, seeding, errors, graphs, config, profiling,
    convergence, sweeps)
      -> scm -> {discovery, jepa} -> {dml, intervene} -> run, tour, costs, __main__

Siblings in a system tier are independent systems and may not import each other; plumbing modules may use one
another, and so may the entry points of the top tier. Every `import` in every module counts, including those
inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import causal_engine

PACKAGE = Path(causal_engine.__file__).resolve().parent
PLUMBING = (
    "train",
    "tables",
    "interventions",
    "metrics",
    "plots",
    "seeding",
    "errors",
    "graphs",
    "config",
    "profiling",
    "convergence",
    "sweeps",
)
TIERS: dict[str, int] = {
    **dict.fromkeys(PLUMBING, 0),
    "scm": 1,
    "discovery": 2,
    "jepa": 2,
    "dml": 3,
    "intervene": 3,
    "run": 4,
    "tour": 4,
    "costs": 4,
    "__main__": 4,
}
SHARED_TIERS = (0, 4)  # units of these tiers may import each other


def unit(dotted: str) -> str:
    """The layer unit of a module path inside the package: its subpackage, or the top-level module itself."""
    return dotted.split(".")[0]


def modules() -> list[tuple[str, Path]]:
    """(dotted name relative to causal_engine, file) of every module; the package's own __init__ is excluded."""
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue
        found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), file))
    return found


def imported_units(name: str, file: Path) -> set[str]:
    """The package units a module imports (absolute and relative, at any depth in the file)."""
    is_package = file.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    units = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                targets = [".".join(["causal_engine", *base, *([node.module] if node.module else [])])]
            else:
                targets = [node.module or ""]
            if targets[0] == "causal_engine":  # `from causal_engine import metrics`: the names are the units
                targets = [f"causal_engine.{alias.name}" for alias in node.names]
        else:
            continue
        units |= {unit(t.removeprefix("causal_engine.")) for t in targets if t.startswith("causal_engine.")}
    return units


def test_every_module_has_a_tier() -> None:
    unplaced = sorted({unit(name) for name, _ in modules()} - set(TIERS))
    assert not unplaced, f"place {unplaced} in a tier of tests/test_layers.py (and of docs/DESIGN)"


@pytest.mark.parametrize(("name", "file"), modules(), ids=[name for name, _ in modules()])
def test_imports_point_down_or_stay_inside_the_system(name: str, file: Path) -> None:
    own = unit(name)
    wrong = sorted(
        other
        for other in imported_units(name, file)
        if other != own
        and other in TIERS
        and (TIERS[other] > TIERS[own] or (TIERS[other] == TIERS[own] and TIERS[own] not in SHARED_TIERS))
    )
    assert not wrong, f"causal_engine.{name} (tier {TIERS[own]}) imports {wrong}, which is not below it"


def test_the_checker_sees_upward_sideways_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from causal_engine.intervene.do import Interventions\n"
        "def f():\n    import causal_engine.jepa.module\n"
        "from causal_engine import plots, run\n"
        "from ..dml import folds\n"
        "from . import batch\n"
        "from .. import tables\n"
    )
    assert imported_units("discovery.mod", source) == {
        "intervene",
        "jepa",
        "plots",
        "run",
        "dml",
        "discovery",
        "tables",
    }
