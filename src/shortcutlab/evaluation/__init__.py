"""Evaluation: metrics per split and group, fairness gaps, probes."""
