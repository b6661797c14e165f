"""Servers under a benchmark run as an installed lancert does: from bytecode caches.

pip compiles every module of a package it installs. This checkout is an editable install, and the
sessions on this machine set ``PYTHONDONTWRITEBYTECODE=1``: a module never cached (or changed since) was
compiled from source by every process that imported it. For the ACME server that was its protocol
modules, built on the first request: the compiler's memory stayed in the process (its peak RSS under
the load 67 -> 65 MiB with the caches, bench/README.md) and its CPU counted in the first requests.
``cli_speed.py`` and ``service_start.py`` already ran without the variable; the others take
:func:`installed_env`.
"""

from __future__ import annotations

import compileall
import os
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def installed_env(src: Path | None = None) -> dict[str, str]:
    """The environment of a server of ``src`` (default: this checkout's), its caches written first."""
    compileall.compile_dir(str(src or SRC), quiet=1)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env
