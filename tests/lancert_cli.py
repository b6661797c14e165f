"""The real ``lancert`` console script in a child process, for tests that drive it as a user would.

Shared by the test directories (``tests/`` is on pytest's ``pythonpath``), so every harness runs the
CLI the same way: this interpreter, ``-m lancert``, output captured, a 60 s bound.
"""

from __future__ import annotations

import subprocess
import sys


def lancert(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``lancert ARGS``; with ``check``, a non-zero exit fails the test with its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "lancert", *args], capture_output=True, text=True, timeout=60, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lancert {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result
