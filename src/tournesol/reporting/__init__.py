"""Measurement: holdouts, attribution, incremental impact with confidence, and the reports."""
