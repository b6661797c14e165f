"""Shipped code reads no test switch from its environment (test hooks come from tests/lancert_with_hooks.py).

Every ``LANCERT_*`` name in src/ must be a documented input for users (a secret kept off the command line);
a new one needs a reason to be added here, and a switch that moves a clock or a crash never has one.
"""

from __future__ import annotations

import re
from pathlib import Path

import lancert

USER_INPUTS = {
    "LANCERT_P12_PASSWORD",  # cert export --format p12: the password, kept out of the process list
    "LANCERT_ACME_EAB_HMAC",  # service run --issuer acme: the upstream's EAB key (docs/service.md)
    "LANCERT_ENTERPRISE_CODE",  # service db add|set: the enterprise code, kept out of the process list
    # _LANCERT_COMPLETE: click's shell-completion protocol; the script --install-completion writes sets it.
    "LANCERT_COMPLETE",
}


def test_shipped_code_names_no_lancert_variable_but_user_inputs() -> None:
    package = Path(lancert.__file__).parent
    found = {
        (name, str(path.relative_to(package)))
        for path in package.rglob("*.py")
        for name in re.findall(r"LANCERT_[A-Z0-9_]+", path.read_text())
    }
    assert {(name, path) for name, path in found if name not in USER_INPUTS} == set()
