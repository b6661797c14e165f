"""The ``lancert`` command line: one module per command, above the library packages they drive.

:mod:`lancert.commands.main` composes them into the console script; each other module holds one
command's Typer app (``cert`` for :mod:`lancert.pki`, the rest named as their command). Nothing in the
library imports from here, so the library stays usable without Typer's view of the world.
"""
