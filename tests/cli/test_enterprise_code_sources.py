"""``service db add|set``: the enterprise code is a credential, so it can come from a file or the environment
instead of the command line, where ``ps`` and the shell's history show it (issue 24 point 9); and both
commands' ``--json`` give timestamps of one kind (UTC, with an offset) as ``db list --json`` does."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from lancert.service.config import ServiceConfig
from lancert.service.database import open_database
from lancert.service.registry import Registry
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # runs the CLI as a subprocess

UUID = "3f1e9a52-7c1d-4b8e-9d6a-2f0c5e8b71db"


def _authenticates(data_dir: Path, code: str) -> bool:
    registry = Registry(open_database(ServiceConfig(data_dir=data_dir)))
    try:
        return registry.authenticate(UUID, code) is not None
    finally:
        registry.database.dispose()


def test_the_code_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "LANCERT_ENTERPRISE_CODE": "M-12345-XYZ"}
    lancert("service", "db", "add", "--uuid", UUID, "--data-dir", str(tmp_path), env=env)
    assert _authenticates(tmp_path, "M-12345-XYZ")


def test_the_code_from_a_file_wins_and_set_changes_it(tmp_path: Path) -> None:
    code_file = tmp_path / "code"
    code_file.write_text("M-12345-XYZ\n")
    code_file.chmod(0o600)
    data = tmp_path / "data"
    env = {**os.environ, "LANCERT_ENTERPRISE_CODE": "not-this-one"}
    lancert("service", "db", "add", "--uuid", UUID, "--code-file", str(code_file), "--data-dir", str(data),
            env=env)
    assert _authenticates(data, "M-12345-XYZ") and not _authenticates(data, "not-this-one")
    code_file.write_text("N-999\n")
    lancert("service", "db", "set", "--uuid", UUID, "--code-file", str(code_file), "--data-dir", str(data))
    assert _authenticates(data, "N-999") and not _authenticates(data, "M-12345-XYZ")


def test_no_code_at_all_is_one_line_and_registers_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LANCERT_ENTERPRISE_CODE"}
    result = lancert("service", "db", "add", "--uuid", UUID, "--data-dir", str(tmp_path / "d"), env=env,
                     check=False)
    assert result.returncode != 0 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("lancert: ") and "--code-file" in result.stderr
    empty = tmp_path / "empty"
    empty.write_text("")
    result = lancert("service", "db", "add", "--uuid", UUID, "--code-file", str(empty), "--data-dir",
                     str(tmp_path / "d"), check=False)
    assert result.returncode != 0 and f"--code-file {empty}: the file is empty" in result.stderr


def test_add_and_list_give_the_same_kind_of_timestamp(tmp_path: Path) -> None:
    added = json.loads(lancert("service", "db", "add", "--json", "--uuid", UUID, "--code", "c", "--data-dir",
                               str(tmp_path)).stdout)
    listed = json.loads(lancert("service", "db", "list", "--json", "--data-dir", str(tmp_path)).stdout)[0]
    for record in (added, listed):
        for key in ("created_at", "updated_at"):
            assert datetime.fromisoformat(record[key]).utcoffset() is not None, record
    assert (added["created_at"], added["updated_at"]) == (listed["created_at"], listed["updated_at"])
