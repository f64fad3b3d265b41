"""Evaluation: the scorer contract, the harness (per seed, pooled, bootstrap CIs, the reference), metrics, plots."""
