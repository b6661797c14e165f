"""``lancert up``'s demo EAB pair: made once for the demo database, kept 0600, reused by later runs, and
it opens an ACME account at the service (the summary line prints it with the directory URL)."""

from __future__ import annotations

import stat

import pytest
from acme_harness import AcmeClient, AcmeService

from lancert.up.stack import demo_acme_eab

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def test_up_demo_eab_pair_is_made_once_kept_private_and_opens_an_account(acme_service: AcmeService) -> None:
    up_dir = acme_service.data_dir.parent  # up keeps the service in <data-dir>/service
    assert acme_service.data_dir.name == "service"
    uuid = acme_service.database()
    pair = demo_acme_eab(up_dir, uuid)
    saved = up_dir / "demo-acme-eab.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert demo_acme_eab(up_dir, uuid) == pair  # a later run reuses it
    assert AcmeClient(acme_service).new_account(pair).status_code == 201
