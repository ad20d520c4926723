"""Wakes in-process readers (webhook dispatcher, SSE streams) when a transaction commits.

Readers then read the database from their own cursor: the bus carries no data, so a missed
wake-up costs latency, never an event. A reader may wait for one *topic* (an SSE stream for its
account): it is woken by commits that name the topic and by broadcasts, not by every commit, so
a thousand open streams do not all read the database after each one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Hashable

Mark = Hashable


class Wakeup:
    """``notify()`` wakes the waiters of every topic; ``notify(topics)`` wakes the topic-less
    waiters and those of ``topics``; waits also end on their timeout.

    A reader notes ``mark(topic)`` before reading and passes it to ``wait(since=...)``, so a
    notification that lands between its read and its wait is not slept through.
    """

    def __init__(self) -> None:
        self._waiters: dict[str | None, set[asyncio.Future[None]]] = {}
        # Counts every notification; broadcasts (every topic) and, per topic, its own.
        self.generation = 0
        self._broadcasts = 0
        self._topics: dict[str, int] = {}
        self._listeners: list[Callable[[Collection[str] | None], None]] = []

    def listen(self, listener: Callable[[Collection[str] | None], None]) -> None:
        """Call ``listener`` with the topics of every notification (None: all topics)."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[Collection[str] | None], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def mark(self, topic: str | None = None) -> Mark:
        if topic is None:
            return self.generation
        return (self._broadcasts, self._topics.get(topic, 0))

    def notify(self, topics: Collection[str] | None = None) -> None:
        self.generation += 1
        for listener in self._listeners:
            listener(topics)
        woken: list[str | None]
        if topics is None:
            self._broadcasts += 1
            woken = list(self._waiters)
        else:
            for topic in topics:
                self._topics[topic] = self._topics.get(topic, 0) + 1
            woken = [None, *(topic for topic in topics if topic in self._waiters)]
        for key in woken:
            for waiter in self._waiters.pop(key, ()):
                if not waiter.done():
                    waiter.set_result(None)

    async def wait(
        self, timeout: float, since: Mark | None = None, topic: str | None = None
    ) -> None:
        if since is not None and self.mark(topic) != since:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(topic, set())
        waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(topic) is waiters:
                del self._waiters[topic]
