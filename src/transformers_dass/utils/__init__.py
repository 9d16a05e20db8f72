"""Helpers with no knowledge of DASS: argument checks and optional dependencies."""
