"""The house drawn from the imports (issue 18): commands above the library, no upward arrow, no circle.

``lint-imports`` checks the contract of pyproject.toml in CI. These tests hold the rules the issue names
independently of that contract, so loosening the contract alone does not let an upward import back in:
each rule is written here, as the issue states it, and checked on the real import graph (grimp, the
library import-linter reads it with; imports inside functions and ``TYPE_CHECKING`` blocks count).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# (importer, imported): arrows the issue found running upward, and clients that imported their servers.
FORBIDDEN = [
    ("lancert.pki", "lancert.storage"),  # the PKI core is below the files written from it
    ("lancert.ca", "lancert.device"),  # a CA on disk is below the device flow that uses it
    ("lancert.dns", "lancert.service"),  # the zone's DNS is below the service that feeds it TXT records
    ("lancert.box", "lancert.service"),  # the box agent is a client of the service: wire schemas only
    ("lancert.pos", "lancert.terminal"),  # the POS is a client of the terminal: wire schemas only
]
LIBRARY = ["pki", "storage", "ca", "device", "trust", "check", "scan", "dns", "service", "box", "terminal",
           "pos", "printer", "up"]
# The ACME server is the service's third front; a package named ``acme`` would shadow certbot's library.
ACME_SERVER = "lancert.service.acmeserver"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("lancert", cache_dir=None)


def test_the_contract_of_pyproject_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename="pyproject.toml", no_cache=True) == 0


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_no_upward_arrow(graph: grimp.ImportGraph, importer: str, imported: str) -> None:
    chain = graph.find_shortest_chain(importer=importer, imported=imported, as_packages=True)
    assert chain is None, f"{importer} imports {imported}: {' -> '.join(chain or ())}"


@pytest.mark.parametrize("package", LIBRARY)
def test_no_library_package_imports_the_commands(graph: grimp.ImportGraph, package: str) -> None:
    chain = graph.find_shortest_chain(importer=f"lancert.{package}", imported="lancert.commands",
                                      as_packages=True)
    assert chain is None, " -> ".join(chain or ())
    assert not [m for m in graph.find_children(f"lancert.{package}") if m.endswith(".cli")]


def test_the_service_settings_are_no_circle(graph: grimp.ImportGraph) -> None:
    """``service/config.py``, ``database.py`` and ``ratelimit.py`` imported each other in a circle."""
    modules = ["lancert.service.config", "lancert.service.database", "lancert.service.ratelimit"]
    for a in modules:
        for b in modules:
            if a != b and graph.chain_exists(importer=a, imported=b):
                assert not graph.chain_exists(importer=b, imported=a), f"{a} and {b} import each other"


def test_the_acme_server_is_the_service_s_front_and_shadows_nothing(graph: grimp.ImportGraph) -> None:
    assert ACME_SERVER in graph.modules
    assert "lancert.acme" not in graph.modules
    assert not (ROOT / "tests" / "acme").exists()  # a tests/acme/ directory reads as a package 'acme'


@pytest.mark.slow
def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """The contract is not vacuous: a copy of the tree with one upward import (the PKI core importing
    the storage module, the first arrow the issue names) fails ``lint-imports``, and names that arrow."""
    shutil.copytree(ROOT / "src" / "lancert", tmp_path / "lancert",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    names = tmp_path / "lancert" / "pki" / "names.py"
    names.write_text(names.read_text() + "\nfrom lancert.storage.files import atomic_write  # noqa\n")
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "lancert.pki is not allowed to import lancert.storage" in result.stdout
    assert "lancert.pki.names -> lancert.storage.files" in result.stdout
