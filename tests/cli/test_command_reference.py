"""docs/commands.md names every command and every option of the program, so the reference cannot fall behind.

The command tree is read from the program itself (the Typer app ``lancert`` runs), not from a list kept here.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from lancert.commands.main import build_app

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "commands.md"


def _commands() -> dict[str, list[str]]:
    """Every runnable command path (``lancert service db add``) with its option names."""
    found: dict[str, list[str]] = {}

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            for name, sub in subcommands.items():
                if name != "help":
                    walk(sub, [*path, name])
            return
        found[" ".join(path)] = [p.opts[0] for p in command.params  # type: ignore[attr-defined]
                                 if p.param_type_name == "option" and p.opts[0] != "--help"]

    walk(typer.main.get_command(build_app()), ["lancert"])
    return found


def _sections() -> dict[str, str]:
    text = REFERENCE.read_text()
    parts = re.split(r"^### `([^`]+)`\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_command_has_a_section() -> None:
    commands = _commands()
    assert len(commands) >= 30  # up, device, cert, trust, check, ca, service, dns, box, ...
    missing = sorted(set(commands) - set(_sections()))
    assert missing == []


def test_every_option_is_named_in_its_command_section() -> None:
    sections = _sections()
    missing = [f"{path} {option}" for path, options in _commands().items() for option in options
               if f"`{option}" not in sections.get(path, "") and f"/{option}" not in sections.get(path, "")]
    assert missing == []


def test_no_section_names_a_command_that_does_not_exist() -> None:
    assert sorted(set(_sections()) - set(_commands())) == []
