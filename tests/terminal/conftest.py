"""Fixtures of the terminal tests: a real terminal subprocess (see terminal_harness)."""

from pathlib import Path

import pytest
from terminal_harness import terminal

__all__ = ["terminal"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on a running terminal process are ``slow`` (the marker's meaning: a server process), so a fast
    selection such as the mutation run's ``-m "not slow"`` keeps only the in-process rules."""
    here = Path(__file__).parent
    for item in items:
        if "terminal" in getattr(item, "fixturenames", ()) and here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)
