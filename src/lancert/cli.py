"""The ``lancert`` console script: one Typer app composed of each component's commands.

Failures a user can act on are :class:`~lancert.errors.LancertError`; they end as one line on stderr
and a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from lancert.errors import LancertError

app = typer.Typer(
    name="lancert",
    help="Certificates that browsers and POS apps trust, for printers, payment terminals and IoT boxes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register() -> None:
    from lancert.ca.cli import app as ca_app
    from lancert.check.cli import check as check_command
    from lancert.device.cli import app as device_app
    from lancert.pki.cli import app as cert_app
    from lancert.trust.cli import app as trust_app

    app.add_typer(device_app, name="device")
    app.add_typer(cert_app, name="cert")
    app.add_typer(ca_app, name="ca")
    app.add_typer(trust_app, name="trust")
    app.command("check")(check_command)

    from lancert.pos.cli import app as pos_app
    from lancert.terminal.cli import app as terminal_app

    app.add_typer(terminal_app, name="terminal")
    app.add_typer(pos_app, name="pos")

    from lancert.dns.cli import app as dns_app
    from lancert.service.cli import app as service_app

    app.add_typer(service_app, name="service")
    app.add_typer(dns_app, name="dns")

    from lancert.box.cli import app as box_app
    from lancert.up.cli import up

    app.add_typer(box_app, name="box")

    app.command("up")(up)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``lancert: message`` on stderr; return the Exit to raise (``raise fail(...)``)."""
    sys.stderr.write(f"lancert: {message}\n")
    return typer.Exit(code)


_register()


def main() -> None:
    try:
        app()
    except LancertError as exc:
        sys.stderr.write(f"lancert: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("lancert: interrupted\n")
        sys.exit(130)
