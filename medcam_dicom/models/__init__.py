"""Classifiers: architectures, and the demo models shipped with the package."""
