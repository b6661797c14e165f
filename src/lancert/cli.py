"""The ``lancert`` console script: one Typer app composed of each component's commands.

Failures a user can act on are :class:`~lancert.errors.LancertError`; they end as one line on stderr
and a non-zero exit, never as a traceback. Each component is imported only when its command runs
(the service alone pulls in FastAPI, SQLAlchemy and Alembic), so ``lancert cert show`` starts fast.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache

import typer

try:  # Typer 0.2x vendors its own copy of click; older ones use click itself.
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

from lancert.errors import LancertError

# (command name, module, attribute, is a sub-app): the order is the order of ``lancert --help``.
COMPONENTS: tuple[tuple[str, str, str, bool], ...] = (
    ("up", "lancert.up.cli", "up", False),
    ("device", "lancert.device.cli", "app", True),
    ("cert", "lancert.pki.cli", "app", True),
    ("trust", "lancert.trust.cli", "app", True),
    ("check", "lancert.check.cli", "check", False),
    ("ca", "lancert.ca.cli", "app", True),
    ("service", "lancert.service.cli", "app", True),
    ("dns", "lancert.dns.cli", "app", True),
    ("box", "lancert.box.cli", "app", True),
    ("terminal", "lancert.terminal.cli", "app", True),
    ("pos", "lancert.pos.cli", "app", True),
    ("printer", "lancert.printer.cli", "app", True),
    ("scan", "lancert.scan.cli", "scan", False),
)


def build_app(only: str | None = None) -> typer.Typer:
    """The CLI with every component, or with just ``only`` when the command line names one."""
    app = typer.Typer(
        name="lancert",
        help="Certificates that browsers and POS apps trust, for printers, payment terminals and IoT boxes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # A callback keeps the app a group even when it holds one plain command (``check``, ``up``);
    # without it Typer would run that command as the program itself.
    app.callback()(_root)
    for name, module, attr, is_group in COMPONENTS:
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attr)
        if is_group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def _root() -> None:
    """Certificates that browsers and POS apps trust, for printers, payment terminals and IoT boxes."""


@cache
def _full_app() -> typer.Typer:
    return build_app()


def __getattr__(name: str) -> object:
    # ``from lancert.cli import app`` (tests, in-process runners) gets every command.
    if name == "app":
        return _full_app()
    raise AttributeError(name)


def _requested(argv: list[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in {c[0] for c in COMPONENTS} else None


def _one_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "failed"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    app = build_app(_requested(args))
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
        sys.exit(130)
    except LancertError as exc:
        sys.stderr.write(f"lancert: {_one_line(str(exc)) if str(exc) else type(exc).__name__}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("lancert: interrupted\n")
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
