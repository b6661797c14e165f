"""Fixtures of the terminal tests: a real terminal subprocess (see terminal_harness)."""

from terminal_harness import terminal

__all__ = ["terminal"]
