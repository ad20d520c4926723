"""The gateway process's garbage collection: full collections on a timer, not by count."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from wagate.core import collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_freezes_what_exists_and_stops_full_collections_by_count(restored_gc: None) -> None:
    collector.tune()
    assert gc.get_threshold() == collector.THRESHOLDS
    assert gc.get_freeze_count() > 0


async def test_full_collections_come_from_the_timer(restored_gc: None) -> None:
    collector.tune()
    full: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(info["collected"])

    gc.callbacks.append(seen)
    try:
        for _ in range(200_000):  # far past the default count that starts a full collection
            cycle: list[object] = []
            cycle.append(cycle)
        assert full == []
        timer = asyncio.ensure_future(collector.collect_forever(every=0.05))
        await asyncio.sleep(0.3)
        timer.cancel()
        assert full, "no full collection ran"
    finally:
        gc.callbacks.remove(seen)
