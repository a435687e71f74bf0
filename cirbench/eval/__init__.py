"""Evaluation: protocols (TOML tasks), datasets, the runner, per-image records and merging."""
