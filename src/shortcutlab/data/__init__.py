"""Data layer: embedded synthetic datasets, user data loaders and the split builder."""
