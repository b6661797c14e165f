"""An app built on first need (``lancert.serving.lazy``): built once however many requests ask for it at
once, in another thread than the event loop's (which goes on running meanwhile), and built again by the
next request when a build failed."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lancert.serving.lazy import BuiltOnFirstNeed


def test_many_waiters_share_one_build_made_off_the_event_loop() -> None:
    builds: list[str] = []

    def build() -> str:
        time.sleep(0.2)
        builds.append(threading.current_thread().name)
        return "app"

    async def main() -> tuple[list[str], int]:
        lazy = BuiltOnFirstNeed(build)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while not lazy.built:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(tick())
        got = await asyncio.gather(*(lazy.get() for _ in range(20)))
        await ticking
        return list(got), ticks

    got, ticks = asyncio.run(main())
    assert got == ["app"] * 20
    assert len(builds) == 1 and builds[0] != threading.main_thread().name
    assert ticks >= 1  # the loop ran while the build was under way


def test_a_failed_build_is_tried_again_by_the_next_request() -> None:
    attempts: list[int] = []

    def build() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk gone")
        return "app"

    async def main() -> str:
        lazy = BuiltOnFirstNeed(build)
        with pytest.raises(OSError, match="disk gone"):
            await lazy.get()
        return await lazy.get()

    assert asyncio.run(main()) == "app"
    assert len(attempts) == 2
