"""Double machine learning: the data contract, cross-fitted nuisances, orthogonal scores and diagnostics."""
