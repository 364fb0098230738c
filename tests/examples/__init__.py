"""The runner that executes every code example of README.md and docs/**/*.md as a test (Sybil)."""
