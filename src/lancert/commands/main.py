"""The ``lancert`` console script: one Typer app composed of each component's commands.

Failures a user can act on are :class:`~lancert.errors.LancertError`; they end as one line on stderr
and a non-zero exit, never as a traceback. Each component is imported only when its command runs
(the service alone pulls in FastAPI, SQLAlchemy and Alembic), so ``lancert cert show`` starts fast;
``lancert --help`` lists the components from :data:`SUMMARIES` without importing any of them (it took
2.5-3 s when it imported all of them).
"""

from __future__ import annotations

import gc
import importlib
import os
import re
import sys
import threading
from functools import cache
from typing import Annotated

import typer

try:  # Typer 0.2x vendors its own copy of click; older ones use click itself.
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

from lancert.errors import LancertError

# (command name, module, attribute, is a sub-app): the order is the order of ``lancert --help``.
COMPONENTS: tuple[tuple[str, str, str, bool], ...] = (
    ("up", "lancert.commands.up", "up", False),
    ("device", "lancert.commands.device", "app", True),
    ("cert", "lancert.commands.cert", "app", True),
    ("trust", "lancert.commands.trust", "app", True),
    ("check", "lancert.commands.check", "check", False),
    ("ca", "lancert.commands.ca", "app", True),
    ("service", "lancert.commands.service", "app", True),
    ("dns", "lancert.commands.dns", "app", True),
    ("box", "lancert.commands.box", "app", True),
    ("terminal", "lancert.commands.terminal", "app", True),
    ("pos", "lancert.commands.pos", "app", True),
    ("printer", "lancert.commands.printer", "app", True),
    ("scan", "lancert.commands.scan", "scan", False),
)

# What ``lancert --help`` shows per component without importing it; the same text as the component's
# own help (a test compares them). A component missing here is imported for its help: slower, not wrong.
SUMMARIES: dict[str, str] = {
    "up": "Run the whole system on this machine (loopback only) and show which device has a padlock.",
    "check": "The padlock verdict for URL, with every reason a browser would warn.",
    "device": "Certificates for devices such as receipt printers: self-signed, or the shop CA's.",
    "cert": "Show and export certificates.",
    "trust": "Fetch device certificates and install them into trust stores.",
    "ca": "A local certificate authority.",
    "service": "The certificate service for IoT boxes (provider side).",
    "dns": "Authoritative DNS for the managed zone.",
    "box": "The IoT box agent: obtains, renews and serves its HTTPS certificate.",
    "terminal": "The payment-terminal side of paired mutual TLS.",
    "pos": "The POS side of terminal pairing: pair once, then call over mutual TLS.",
    "printer": "A simulated Epson ePOS receipt printer.",
    "scan": (
        "Find every TLS service in CIDR: its certificate, whether this machine trusts it, what device it is."
    ),
}

HELP_COMMAND = "help"
INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
# Shell completion (``--install-completion``) calls the program back with this variable set: it needs
# every command, whatever the command line holds so far.
COMPLETION_VARIABLE = "_LANCERT_COMPLETE"


def _no_flag_metavar() -> None:
    """Show flags without a value placeholder: Typer 0.28-0.29 print ``--json <bool>``, which invites
    ``--json true`` (then refused). Click itself shows flags bare; this restores that for every command.
    Typer 0.27 (what pyproject.toml allows) shows them bare already and has no ``display_type_rich``:
    nothing to do there; an environment still holding a newer Typer gets the same help."""
    core = importlib.import_module("typer.core")
    original = getattr(core.TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_lancert", False):
        return

    def display_type_rich(self: typer.core.TyperOption, ctx: object) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._lancert = True  # type: ignore[attr-defined]
    core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_flag_metavar()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"lancert {version('lancert')}")
        except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
            typer.echo("lancert (version unknown: not installed)")
        raise typer.Exit(0)


HELP_SUMMARY = "Show the help of a command: 'lancert help trust install' is 'lancert trust install --help'."


def _summary_only(name: str, summary: str) -> typer.Typer:
    """A component as ``lancert --help`` lists it: its name and summary, nothing imported."""
    return typer.Typer(name=name, help=summary, short_help=summary)


def build_app(only: str | None = None, *, listing: bool = False) -> typer.Typer:
    """The CLI with every component, or with just ``only`` when the command line names one.

    With ``listing`` (no component named: ``lancert --help``, ``--version``), components are listed
    from :data:`SUMMARIES` and not imported.
    """
    app = typer.Typer(
        name="lancert",
        help="Certificates that browsers and POS apps trust, for printers, payment terminals and IoT boxes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # A callback keeps the app a group even when it holds one plain command (``check``, ``up``);
    # without it Typer would run that command as the program itself.
    app.callback()(_root)
    for name, module, attr, is_group in COMPONENTS:
        if only is not None and name != only:
            continue
        if listing and name in SUMMARIES:
            app.add_typer(_summary_only(name, SUMMARIES[name]), name=name)
            continue
        target = getattr(importlib.import_module(module), attr)
        if is_group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    if only is None:  # main() turns 'help X' into 'X --help' before parsing: this entry is its listing
        app.add_typer(_summary_only(HELP_COMMAND, HELP_SUMMARY), name=HELP_COMMAND)
    return app


def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print lancert's version and exit.", callback=_version,
                           is_eager=True)
    ] = False,
) -> None:
    """Certificates that browsers and POS apps trust, for printers, payment terminals and IoT boxes.

    'lancert help COMMAND' or 'lancert COMMAND --help' explains each command.
    """


@cache
def _full_app() -> typer.Typer:
    return build_app()


def __getattr__(name: str) -> object:
    # ``from lancert.commands.main import app`` (tests, in-process runners) gets every command.
    if name == "app":
        return _full_app()
    raise AttributeError(name)


def _requested(argv: list[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in {c[0] for c in COMPONENTS} else None


def _one_line(message: str) -> str:
    """The first line of click's message; a list of choices (``Choose from:`` then one per line) is
    joined into that line, since the choices are the answer to a missing or invalid choice."""
    text = message.strip()
    if not text:
        return "failed"
    if "Choose from:" in text:
        return re.sub(r"\s*\n\s*", " ", text)
    return text.splitlines()[0]


def _help_argv(args: list[str]) -> list[str]:
    """``help [COMMAND...]`` is ``[COMMAND...] --help``."""
    if args and args[0] == HELP_COMMAND:
        return [*args[1:], "--help"]
    return args


# How long a command starts with the cyclic garbage collector paused (see _pause_gc_while_starting).
START_GC_PAUSE = 3.0


def _pause_gc_while_starting(seconds: float = START_GC_PAUSE) -> None:
    """Pause the cyclic garbage collector for the first ``seconds`` of the process, then resume it.

    A command's start is mostly imports (the service: FastAPI, SQLAlchemy, pydantic's models, about a
    second here), which allocate hundreds of thousands of objects that all stay alive, so every
    collection the allocation count triggers meanwhile scans them for nothing: 8-10 % of the service's
    import CPU on this machine (its imports with the collector on / off: 0.84-0.98 / 0.76-0.91 s), and
    as much in every child ``lancert up`` waits for. Reference counting still frees everything that is
    not a cycle; cycles made meanwhile are collected once the collector resumes. Bounded in time, not
    tied to a ready line, so that a command that never serves (``scan`` of a large network) collects
    as usual after its start."""
    gc.disable()
    timer = threading.Timer(seconds, gc.enable)
    timer.daemon = True  # never keeps a finished command alive
    timer.start()


def main(argv: list[str] | None = None) -> None:
    _pause_gc_while_starting()
    args = _help_argv(sys.argv[1:] if argv is None else argv)
    requested = None if os.environ.get(COMPLETION_VARIABLE) else _requested(args)
    app = build_app(requested, listing=requested is None and not os.environ.get(COMPLETION_VARIABLE))
    try:
        result = app(args=args, prog_name="lancert", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.format_message() + "\n")
        sys.exit(2)
    except click_errors.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else "lancert"
        sys.stderr.write(f"lancert: {_one_line(exc.format_message())} (see '{path} --help')\n")
        sys.exit(2)
    except click_errors.ClickException as exc:
        sys.stderr.write(f"lancert: {_one_line(exc.format_message())}\n")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("lancert: aborted\n")
        sys.exit(INTERRUPTED)
    except LancertError as exc:
        sys.stderr.write(f"lancert: {_one_line(str(exc)) if str(exc) else type(exc).__name__}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("lancert: interrupted\n")
        sys.exit(INTERRUPTED)
    if result == INTERRUPTED:
        # Typer turns Ctrl-C into a silent exit 130 (no KeyboardInterrupt reaches this function): say it.
        sys.stderr.write("lancert: interrupted\n")
    sys.exit(result if isinstance(result, int) else 0)
