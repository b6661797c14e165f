"""Fixtures of the box tests; the helpers live in ``box_harness.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from box_harness import Box, Service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("box-service") / "data").start()
    yield svc
    svc.stop()


@pytest.fixture
def boxes(tmp_path: Path) -> Iterator[list[Box]]:
    started: list[Box] = []
    yield started
    for box in started:
        box.stop()


@pytest.fixture
def make_box(tmp_path: Path, boxes: list[Box]):  # type: ignore[no-untyped-def]
    def make(*args: str, name: str = "box", env: dict[str, str] | None = None, start: bool = True) -> Box:
        box = Box(tmp_path / name, list(args), env or {})
        boxes.append(box)
        return box.start() if start else box
    return make
