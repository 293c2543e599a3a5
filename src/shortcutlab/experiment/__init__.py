"""Experiment layer: config, runner, results store."""
