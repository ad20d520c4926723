"""Wakes in-process readers (webhook dispatcher, SSE streams) when a transaction commits, and
hands the events it committed to the streams that subscribed to their account.

The database stays the source of truth: a reader that finds a gap in what it was handed (an
account's ``seq`` not following on, a commit of another process, an overflow) reads the
database from its own cursor, so a missed hand-over costs latency, never an event. A reader may
wait for one *topic* (an SSE stream for its account): it is woken by commits that name the topic
and by broadcasts, not by every commit, so a thousand open streams do not all wake after each one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wagate.db.models import Event

Mark = Hashable
# Events held for a subscriber that does not take them; past this it reads the database instead.
BACKLOG = 1000


class Subscription:
    """The events this process committed for one topic since the subscriber last took them."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._events: list[Event] = []
        # The highest event id handed over or read by the subscriber: a commit another process
        # made up to here is not news.
        self.seen = 0
        # Set when what was handed over is not the whole story: read the database.
        self.stale = False

    def hand(self, event: Event) -> None:
        self.seen = max(self.seen, event.id)
        if len(self._events) >= BACKLOG:
            self._events.clear()
            self.stale = True
        else:
            self._events.append(event)

    def take(self) -> tuple[list[Event], bool]:
        """The events handed over since the last take, and whether the database must be read
        (a commit this process did not make, or a backlog dropped)."""
        events, self._events = self._events, []
        stale, self.stale = self.stale, False
        return events, stale


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
        self._subscriptions: dict[str, set[Subscription]] = {}

    def listen(self, listener: Callable[[Collection[str] | None], None]) -> None:
        """Call ``listener`` with the topics of every notification (None: all topics)."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[Collection[str] | None], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def subscribe(self, topic: str) -> Subscription:
        """Hand the events of ``topic`` committed from now on to the subscription."""
        subscription = Subscription(topic)
        self._subscriptions.setdefault(topic, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscriptions.get(subscription.topic)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscriptions[subscription.topic]

    def subscribed(self) -> bool:
        """Whether any topic has a subscriber."""
        return bool(self._subscriptions)

    def seen(self) -> dict[str, int]:
        """Each subscribed topic with the highest event id all of its subscribers have seen."""
        return {
            topic: min(s.seen for s in subscribers)
            for topic, subscribers in self._subscriptions.items()
        }

    def stale(self, topics: Iterable[str]) -> None:
        """Another process committed events of ``topics``: their subscribers read the database."""
        topics = list(topics)
        for topic in topics:
            for subscription in self._subscriptions.get(topic, ()):
                subscription.stale = True
        self.notify(topics)

    def mark(self, topic: str | None = None) -> Mark:
        if topic is None:
            return self.generation
        return (self._broadcasts, self._topics.get(topic, 0))

    def notify(self, topics: Collection[str] | None = None, events: Iterable[Event] = ()) -> None:
        for event in events:
            if event.account_id is not None:
                for subscription in self._subscriptions.get(event.account_id, ()):
                    subscription.hand(event)
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
