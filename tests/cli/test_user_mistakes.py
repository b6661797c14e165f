"""A new user's mistakes get one ``lancert:`` line and change nothing (issue 24 point 9): a mistyped state
or data directory, an output file that exists, an empty --ca file, --nssdb without --store."""

from __future__ import annotations

from pathlib import Path

import pytest

from lancert_cli import lancert
from trust.trust_helpers import make_nssdb

pytestmark = pytest.mark.slow  # runs the CLI as a subprocess


def _one_line(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("lancert: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_unpair_on_a_mistyped_state_dir_is_one_line(tmp_path: Path) -> None:
    """Before: a 40-line traceback."""
    missing = tmp_path / "no-such-terminal"
    _one_line(lancert("terminal", "unpair", "--state-dir", str(missing), "--pos-id", "1", check=False),
              f"{missing}: no terminal state here")
    assert not missing.exists()


@pytest.mark.parametrize("command", [["root"], ["certs"], ["db", "list"], ["acme-eab", "--uuid", "x"]])
def test_service_reads_on_a_mistyped_data_dir_refuse_and_create_nothing(tmp_path: Path, command: list[str]
                                                                        ) -> None:
    """Before: the directory was made with an empty database, and the answer was "nothing registered"."""
    missing = tmp_path / "no-such-data"
    _one_line(lancert("service", *command, "--data-dir", str(missing), check=False),
              f"{missing}: no service data here")
    assert not missing.exists()


def test_ca_issue_does_not_replace_a_certificate_without_force(tmp_path: Path) -> None:
    lancert("ca", "init", "--dir", str(tmp_path / "ca"))
    issue = ["ca", "issue", "--dir", str(tmp_path / "ca"), "--ip", "192.168.1.25",
             "-o", str(tmp_path / "out")]
    lancert(*issue)
    first = (tmp_path / "out" / "cert.pem").read_bytes()
    _one_line(lancert(*issue, check=False), "already exists; use --force")
    assert (tmp_path / "out" / "cert.pem").read_bytes() == first
    lancert(*issue, "--force")
    assert (tmp_path / "out" / "cert.pem").read_bytes() != first


def test_trust_fetch_does_not_replace_a_file_without_force(tmp_path: Path) -> None:
    kept = tmp_path / "printer.crt"
    kept.write_text("mine\n")
    _one_line(lancert("trust", "fetch", "https://127.0.0.1:1/", "-o", str(kept), check=False),
              f"{kept} already exists; use --force")
    assert kept.read_text() == "mine\n"


def test_trust_install_with_nssdb_needs_no_store(tmp_path: Path) -> None:
    lancert("device", "create", "--ip", "192.168.1.25", "--dir", str(tmp_path / "device"))
    db = make_nssdb(tmp_path / "nssdb")
    lancert("trust", "install", str(tmp_path / "device" / "cert.pem"), "--nssdb", str(db))
    listed = lancert("trust", "list", "--nssdb", str(db)).stdout
    assert "192.168.1.25" in listed


def test_pos_pair_with_an_empty_ca_file_names_it(tmp_path: Path) -> None:
    empty = tmp_path / "terminal-root.pem"
    empty.write_text("")
    _one_line(lancert("pos", "pair", "--terminal", "https://127.0.0.1:1/", "--pos-id", "1", "--code", "X",
                      "--dir", str(tmp_path / "pos"), "--ca", str(empty), check=False),
              f"{empty}: file is empty")
