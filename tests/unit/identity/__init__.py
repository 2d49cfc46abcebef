"""Unit tests of identity resolution's pure rules (no database)."""
