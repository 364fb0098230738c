"""Fails to import: a dependency is missing."""

raise ImportError("needs libfoo")
