"""The help a new user reads: choices listed when one is missing, flags without ``<bool>``, every option
described, a fast ``lancert --help``, ``--version``, ``lancert help``, and shell completion."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from lancert.commands import main as cli
from lancert_cli import lancert


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("trust", "install", "x.crt"),
         "lancert: Missing option '--store'. Choose from: nss, system, java "
         "(see 'lancert trust install --help')"),
        (("trust", "guide", "x.crt"),
         "lancert: Missing option '--os'. Choose from: windows, macos, linux, android, ios "
         "(see 'lancert trust guide --help')"),
        (("cert", "export", "x.crt", "-o", "x.der"),
         "lancert: Missing option '--format'. Choose from: crt, pem, der, p12, mobileconfig "
         "(see 'lancert cert export --help')"),
    ],
    ids=["trust-install-store", "trust-guide-os", "cert-export-format"],
)
@pytest.mark.slow
def test_a_missing_required_choice_lists_the_choices(args: tuple[str, ...], expected: str) -> None:
    result = lancert(*args, check=False)
    assert result.returncode == 2
    assert result.stderr == expected + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("command", [(), ("cert", "show"), ("up",), ("service", "db", "add"), ("check",)])
def test_flags_show_no_value_placeholder(command: tuple[str, ...]) -> None:
    result = lancert(*command, "--help", env={**os.environ, "COLUMNS": "200"})
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout


def _commands(command: click.Command, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_every_option_and_argument_of_every_command_is_described_without_rst_markup() -> None:
    root = typer.main.get_command(cli.build_app())
    missing, markup = [], []
    for path, command in _commands(root, ("lancert",)):
        if "``" in (command.help or ""):
            markup.append(" ".join(path))
        for param in command.params:
            if not getattr(param, "help", None):
                missing.append(f"{' '.join(path)} {param.opts}")
            elif "``" in param.help:
                markup.append(f"{' '.join(path)} {param.opts}")
    assert missing == []
    assert markup == []


@pytest.mark.slow
def test_top_level_help_imports_no_component() -> None:
    # python -X importtime lists every module imported; --help must not pay for the service's stack.
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "lancert", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "trust" in result.stdout and "service" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in imported if m.split(".")[0] in {"cryptography", "fastapi", "sqlalchemy",
                                                               "alembic", "httpx", "uvicorn"}
                   or m.startswith(("lancert.pki", "lancert.service", "lancert.trust")))
    assert heavy == []


def test_the_listing_shows_each_component_as_its_own_help_says() -> None:
    for name, module, attr, _ in cli.COMPONENTS:
        assert name in cli.SUMMARIES, (
            f"add {name!r} to lancert.commands.main.SUMMARIES: 'lancert --help' imports it")
        target = getattr(importlib.import_module(module), attr)
        own = target.info.help if isinstance(target, typer.Typer) else target.__doc__
        assert own.strip().splitlines()[0] == cli.SUMMARIES[name], name


@pytest.mark.slow
def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = lancert("--version")
    assert result.stdout == f"lancert {version('lancert')}\n"


@pytest.mark.slow
def test_help_command_shows_a_command_help() -> None:
    result = lancert("help", "trust", "install", env={**os.environ, "COLUMNS": "200"})
    assert "Usage: lancert trust install [OPTIONS]" in result.stdout
    assert "--store" in result.stdout


@pytest.mark.slow
def test_shell_completion_completes_commands_and_choices() -> None:
    env = {**os.environ, "_LANCERT_COMPLETE": "complete_bash", "COMP_WORDS": "lancert tr", "COMP_CWORD": "1"}
    assert lancert(env=env).stdout.split() == ["trust"]
    env.update(COMP_WORDS="lancert trust install --store ", COMP_CWORD="4")
    assert lancert(env=env).stdout.split() == ["nss", "system", "java"]
    script = lancert("--show-completion", "bash", env={**os.environ})
    assert "_LANCERT_COMPLETE" in script.stdout


@pytest.mark.slow
def test_registry_commands_on_a_migrated_database_import_neither_alembic_nor_the_web_stack(
        tmp_path: Path) -> None:
    # The measured cost of 'service db add' was mostly imports: Alembic (to find nothing to migrate)
    # and FastAPI (through the server module). bench/cli_speed.py has the times.
    lancert("service", "db", "add", "--uuid", "first", "--code", "c1", "--data-dir", str(tmp_path))
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "lancert", "service", "db", "add",
                             "--uuid", "second", "--code", "c2", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert sorted(m for m in imported if m.split(".")[0] in {"alembic", "fastapi", "uvicorn", "mako"}) == []
    listed = lancert("service", "db", "list", "--data-dir", str(tmp_path)).stdout
    assert listed.splitlines() == [
        "first: production, subscription in_progress, with IoT box line",
        "second: production, subscription in_progress, with IoT box line"]
