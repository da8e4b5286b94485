"""causal-engine: three causal-ML systems on one Hydra + Lightning framework.

The seed's API is importable from the top: `from causal_engine import CausalMLP, CausalLosses`. It is
loaded on first use, so `import causal_engine` stays light for the command line and small helpers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["CausalLosses", "CausalMLP", "CausalUnit"]

_EXPORTS = {
    "CausalMLP": "causal_engine.intervene.causal_mlp",
    "CausalLosses": "causal_engine.intervene.losses",
    "CausalUnit": "causal_engine.intervene.do",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'causal_engine' has no attribute {name!r}")
