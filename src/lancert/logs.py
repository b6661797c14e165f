"""Logging of the long-running commands (``service run``, ``terminal run``, ``dns run``): one format, on
stderr, at the level ``--log-level`` names.

``lancert up`` sends each child's stderr to ``<data-dir>/logs/<child>.log``, so these lines are what its
log files hold. The rule for every line: what happened to which request (issued, refused and why,
paired), never a secret (enterprise codes, setup codes, keys are never formatted into a message).
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from typing import Annotated

import typer

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


LogLevelOption = Annotated[
    LogLevel,
    typer.Option("--log-level", case_sensitive=False,
                 help="INFO: a line per request that matters (issued, refused, paired); WARNING: problems."),
]


def configure_logging(level: LogLevel | str = LogLevel.INFO) -> None:
    """Send the ``lancert`` loggers to stderr at ``level``; calling it again only changes the level."""
    logger = logging.getLogger("lancert")
    logger.setLevel(str(level).upper())
    if not any(getattr(h, "_lancert", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._lancert = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
