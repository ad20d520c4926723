"""The wake-up bus: a topic's readers wake on commits that name it and on broadcasts only."""

from __future__ import annotations

import asyncio

from wagate.bus import Wakeup


async def woken(bus: Wakeup, topic: str | None, notify: object) -> bool:
    """Whether a reader waiting on ``topic`` returns before its timeout after ``notify()``."""
    waiter = asyncio.create_task(bus.wait(5.0, topic=topic))
    await asyncio.sleep(0)
    assert callable(notify)
    notify()
    done, _ = await asyncio.wait({waiter}, timeout=0.5)
    waiter.cancel()
    return bool(done)


async def test_topic_readers_wake_for_their_topic_and_broadcasts_only() -> None:
    bus = Wakeup()
    assert not await woken(bus, "a", lambda: bus.notify(["b"]))
    assert not await woken(bus, "a", lambda: bus.notify(()))
    assert await woken(bus, "a", lambda: bus.notify(["b", "a"]))
    assert await woken(bus, "a", bus.notify)


async def test_topicless_readers_wake_on_every_commit() -> None:
    bus = Wakeup()
    assert await woken(bus, None, lambda: bus.notify(["b"]))
    assert await woken(bus, None, lambda: bus.notify(()))
    assert await woken(bus, None, bus.notify)


async def test_a_notification_between_read_and_wait_is_not_slept_through() -> None:
    bus = Wakeup()
    for topic, notify in (("a", lambda: bus.notify(["a"])), ("a", bus.notify), (None, bus.notify)):
        seen = bus.mark(topic)
        notify()
        await asyncio.wait_for(bus.wait(5.0, since=seen, topic=topic), 0.5)
    seen = bus.mark("a")
    bus.notify(["b"])  # not for "a": the reader still sleeps until its timeout
    started = asyncio.get_running_loop().time()
    await bus.wait(0.2, since=seen, topic="a")
    assert asyncio.get_running_loop().time() - started >= 0.19
