"""The wake-up bus: a topic's readers wake on commits that name it and on broadcasts only, and
subscribers are handed the events committed for their topic."""

from __future__ import annotations

import asyncio

from wagate.db.bus import BACKLOG, Wakeup
from wagate.db.models import Event


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


def event(account_id: str, event_id: int) -> Event:
    return Event(id=event_id, account_id=account_id, seq=event_id, type="account.status", data={})


def test_subscribers_are_handed_their_topics_events_in_commit_order() -> None:
    bus = Wakeup()
    mine, other = bus.subscribe("a"), bus.subscribe("b")
    bus.notify(["a", "b"], [event("a", 1), event("b", 2), event("a", 3)])
    assert [e.id for e in mine.take()[0]] == [1, 3]
    assert [e.id for e in other.take()[0]] == [2]
    assert mine.take() == ([], False)  # taken once
    assert bus.seen() == {"a": 3, "b": 2}
    bus.unsubscribe(other)
    bus.notify(["b"], [event("b", 4)])
    assert bus.seen() == {"a": 3}


def test_a_subscriber_that_falls_behind_is_told_to_read_the_database() -> None:
    bus = Wakeup()
    slow = bus.subscribe("a")
    bus.notify(["a"], [event("a", n) for n in range(1, BACKLOG + 2)])
    handed, stale = slow.take()
    assert stale and len(handed) < BACKLOG + 1
    bus.stale(["a"])  # another process committed for "a"
    assert slow.take() == ([], True)


async def test_marking_a_topic_stale_wakes_its_readers() -> None:
    bus = Wakeup()
    bus.subscribe("a")
    assert await woken(bus, "a", lambda: bus.stale(["a"]))
    assert not await woken(bus, "a", lambda: bus.stale(["b"]))
