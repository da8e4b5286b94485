"""Interventions on networks: do-operator units, structural per-node models, fine-tuning, the zoo, queries."""
