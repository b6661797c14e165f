"""The test-only entry point: ``lancert`` with hooks that no shipped program has.

    python tests/lancert_with_hooks.py [--clock-offset-file FILE] [--kill-at POINT[,POINT]] -- ARGS...

runs ``lancert ARGS`` (the real :func:`lancert.commands.main.main`) after binding, in this process only:

- ``--clock-offset-file FILE``: the terminal's setup-code clock is the monotonic clock plus the seconds
  written in FILE (read at every use), so tests move time instead of sleeping 300 s;
- ``--kill-at POINTS``: the box kills itself (SIGKILL) when a renewal reaches one of these steps
  (``key_staged``, ``cert_staged``, ``between_renames``, ``before_state_saved``), the crash tests.

The shipped ``lancert`` reads neither from its environment: whoever can set a deployed process's
variables can move neither a security clock nor a crash. The hooks use the constructors' own parameters
(``SetupCodes(clock=...)``, ``CertificateKeeper(checkpoint=...)``), bound where the servers build them.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HOOKS = str(Path(__file__).resolve())


def program(*hooks: str) -> list[str]:
    """The argv prefix that runs lancert with ``hooks``; the lancert arguments follow."""
    return [sys.executable, HOOKS, *hooks, "--"]


def _bind(module: ModuleType, name: str, **kwargs: object) -> None:
    """Make ``module.name(...)`` pass ``kwargs``: fails loudly if the server stopped building it there."""
    original = getattr(module, name)
    setattr(module, name, functools.partial(original, **kwargs))


def offset_clock(offset_file: Path) -> Callable[[], float]:
    def clock() -> float:
        try:
            return time.monotonic() + float(offset_file.read_text().strip() or 0)
        except (OSError, ValueError):  # being rewritten by the test right now
            return time.monotonic()

    return clock


def kill_at(points: set[str]) -> Callable[[str], None]:
    def checkpoint(point: str) -> None:
        if point in points:
            sys.stderr.write(f"lancert_with_hooks: killing the box at {point}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


def main(argv: list[str]) -> None:
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="lancert_with_hooks")
    parser.add_argument("--clock-offset-file", type=Path)
    parser.add_argument("--kill-at", default="")
    hooks = parser.parse_args(argv[:split])
    if hooks.clock_offset_file is not None:
        import lancert.terminal.server as terminal_server

        _bind(terminal_server, "SetupCodes", clock=offset_clock(hooks.clock_offset_file))
    if hooks.kill_at:
        import lancert.box.server as box_server

        _bind(box_server, "CertificateKeeper", checkpoint=kill_at(set(hooks.kill_at.split(","))))
    from lancert.commands.main import main as lancert_main

    lancert_main(argv[split + 1:])


if __name__ == "__main__":
    main(sys.argv[1:])
