"""Wakes in-process readers (webhook dispatcher, SSE streams) when a transaction commits.

Readers then read the database from their own cursor: the bus carries no data, so a missed
wake-up costs latency, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    """``notify()`` wakes every current ``wait()``; waits also end on their timeout.

    ``generation`` counts notifications: a reader notes it before reading and passes it to
    ``wait(since=...)``, so a commit that lands between its read and its wait is not slept
    through.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self.generation = 0

    def notify(self) -> None:
        self.generation += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, timeout: float, since: int | None = None) -> None:
        if since is not None and self.generation != since:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.discard(waiter)
