"""A capability CI relies on (Firefox's network namespace) fails the run under CI=true instead of skipping.

Runs the real Firefox test module in a child pytest with an ``unshare`` on PATH that always fails, as on a
machine without CAP_SYS_ADMIN: a skip there, an error under CI=true. Firefox is never started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
FIREFOX_TEST = (
    "tests/trust/test_trust_firefox.py::"
    "test_device_certificate_warning_before_install_none_after_and_back_after_remove"
)


def _run_without_namespaces(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "unshare").write_text("#!/bin/sh\necho 'unshare: Operation not permitted' >&2\nexit 1\n")
    (shim / "unshare").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", FIREFOX_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_under_ci_a_missing_network_namespace_fails_the_firefox_tests(tmp_path: Path) -> None:
    result = _run_without_namespaces(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout, result.stdout
    assert "no network namespace (unshare --net) for Firefox here (CI=true" in result.stdout


def test_outside_ci_a_missing_network_namespace_skips_the_firefox_tests(tmp_path: Path) -> None:
    result = _run_without_namespaces(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout, result.stdout
