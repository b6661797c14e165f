"""The one exception type the CLI turns into a one-line message and a non-zero exit.

Every layer raises a subclass of :class:`LancertError` for a condition the user can act on; anything
else is a bug and keeps its traceback.
"""


class LancertError(Exception):
    """A failure the user can understand and fix; ``str()`` is the one-line reason."""

    exit_code = 1


class UsageError(LancertError):
    """Bad input on the command line (an invalid IP, an out-of-range number)."""

    exit_code = 2
