"""Tournesol: a single customer repository and the marketing engine around it."""

__version__ = "0.1.0"
