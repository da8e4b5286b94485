"""Causal discovery with a prior-fitted network (PFN): features, models A-E, loss, training, tasks."""
