"""Segments: a JSON/YAML targeting language compiled to one SQL statement, and its operations."""
