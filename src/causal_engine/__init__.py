"""causal-engine: three causal-ML systems on one Hydra + Lightning framework."""

__version__ = "0.1.0"
