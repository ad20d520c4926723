"""Wakes in-process readers (webhook dispatcher, SSE streams) when a transaction commits.

Readers then read the database from their own cursor: the bus carries no data, so a missed
wake-up costs latency, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    """``notify()`` wakes every current ``wait()``; waits also end on their timeout."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, timeout: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.discard(waiter)
