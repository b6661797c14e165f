"""What a test needs from the machine (a network namespace, PostgreSQL's server, util-linux's setpriv).

On a developer's machine a missing capability skips the test. CI installs and allows all of it
(``.ci/run``), so there a missing one means the suite silently proves less than it claims, with a green
run: under ``CI=true`` (set by GitHub Actions, GitLab CI and most others) it is a failure instead.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require(available: bool, missing: str) -> None:
    """Skip with ``missing`` as the reason, or fail with it under ``CI=true``."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{missing} (CI=true: a missing capability fails the run, never skips)", pytrace=False)
    pytest.skip(missing)


def required_for_module(available: bool, missing: str):
    """A module's autouse fixture that calls :func:`require` before the module's own fixtures start its
    servers: ``_capability = required_for_module(shutil.which("pdns_server") is not None, "...")``."""

    @pytest.fixture(scope="module", autouse=True)
    def _capability() -> None:
        require(available, missing)

    return _capability
