"""Reading the event log from a cursor: polling pages and Server-Sent Events frames (DESIGN §7).

Event ids are allocated when a row is inserted and become visible when its transaction commits.
On PostgreSQL and MySQL two transactions can commit out of id order, so a reader that has seen
id 11 may later find id 10 appear — and a cursor of 11 would skip it for ever. Events of one
account never do this: every transaction that records one holds the account's row lock, so their
ids are allocated and committed in the same order. Reads across accounts therefore stop below any
gap in the ids that is younger than ``SETTLE``: a transaction still open may fill it. A gap older
than that is an id a rolled-back transaction used, and is passed. SQLite has one writer at a time,
so there ids always commit in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.db.bus import Wakeup
from wagate.db.database import Database
from wagate.db.models import Event, envelope, utcnow
from wagate.services.accounts import get_account

log = logging.getLogger("wagate.events")

# Longer than any wagate transaction holds an allocated event id before it commits.
SETTLE = timedelta(seconds=5)


async def page(
    session: AsyncSession,
    caller: Caller,
    *,
    after: int,
    limit: int,
    account_id: str | None = None,
) -> list[Event]:
    """Events after ``after`` the caller may see, in id order, at most ``limit``; another
    workspace's ``account_id`` is ``NotFound``."""
    query = select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    if account_id is not None:
        await get_account(session, caller, account_id)
        return await _rows(session, query.where(Event.account_id == account_id))
    if caller.workspace_id is not None:
        query = query.where(Event.workspace_id == caller.workspace_id)
    rows = await _rows(session, query)
    if not rows or session.get_bind().dialect.name == "sqlite":
        return rows
    horizon = await settled_horizon(session, after, rows, utcnow())
    if horizon <= after:
        return []
    # Read again up to the horizon: each statement of a READ COMMITTED session sees what has
    # committed by then, so events that committed between the first read and the horizon's
    # (filling the gap the horizon then found filled) are in this read and were not in the
    # first; handing out the first read would skip them for ever.
    return await _rows(session, query.where(Event.id <= horizon))


async def account_events(
    session: AsyncSession, account_id: str, after: int, limit: int = 500
) -> list[Event]:
    """One account's events after ``after``; needs no horizon (see the module docstring)."""
    query = (
        select(Event)
        .where(Event.account_id == account_id, Event.id > after)
        .order_by(Event.id)
        .limit(limit)
    )
    return await _rows(session, query)


async def last_event(
    session: AsyncSession, account_id: str, upto: int | None = None
) -> tuple[int, int]:
    """The id and ``seq`` of the account's newest event (with an id up to ``upto``, when given);
    (0, 0) when it has none."""
    query = select(Event.id, Event.seq).where(Event.account_id == account_id)
    if upto is not None:
        query = query.where(Event.id <= upto)
    row = (await session.execute(query.order_by(Event.id.desc()).limit(1))).one_or_none()
    return (row[0], row[1] or 0) if row is not None else (0, 0)


async def settled_horizon(
    session: AsyncSession, after: int, rows: list[Event], now: datetime
) -> int:
    """The highest id up to which no event can still appear, as far as ``rows`` reach."""
    cutoff = now - SETTLE
    young = [row.id for row in rows if row.created_at >= cutoff]
    if not young:
        return rows[-1].id
    # Below the newest event older than SETTLE, every transaction has ended (by assumption).
    floor_query = (
        select(Event.id)
        .where(Event.id < young[0], Event.created_at < cutoff)
        .order_by(Event.id.desc())
        .limit(1)
    )
    floor = max(after, (await session.execute(floor_query)).scalar_one_or_none() or 0)
    ids_query = (
        select(Event.id, Event.created_at)
        .where(Event.id > floor, Event.id <= rows[-1].id)
        .order_by(Event.id)
    )
    horizon = floor
    for event_id, created_at in (await session.execute(ids_query)).all():
        if event_id != horizon + 1 and created_at >= cutoff:
            break  # a gap a running transaction may still fill
        horizon = event_id
    return horizon


def sse_frame(event: Event) -> bytes:
    """One Server-Sent Event: ``id`` the event id, ``event`` its type, ``data`` the envelope."""
    data = json.dumps(envelope(event), separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def _rows(session: AsyncSession, query: Select[Any]) -> list[Event]:
    return list((await session.execute(query)).scalars())


class CommitWatch:
    """Finds the events other processes (another gateway on the same database) committed for
    accounts with a stream open here, and marks those streams stale so they read them; this
    process's own commits reach the streams through the bus. One query per ``interval``,
    however many streams are open.

    Each read looks above a floor: the highest id seen by a read that ended ``SETTLE`` before
    the previous read began. A transaction commits within ``SETTLE`` of taking its id and ids are
    taken in order, so an event that became visible after the previous read has an id above it.
    """

    def __init__(self, db: Database, bus: Wakeup, interval: float = 1.0) -> None:
        self.db = db
        self.bus = bus
        self.interval = interval
        # (monotonic time a read began, when it ended, the highest event id it saw), oldest first.
        self._marks: deque[tuple[float, float, int]] = deque()

    async def run(self) -> None:
        """Watch until cancelled. A failed read (the database away, or anything else) is logged
        and tried again at the next interval: the watch never stops by itself, or every event
        stream here would stop seeing other processes' commits."""
        while not self._marks:
            started = time.monotonic()
            try:
                async with self.db.read_sessions() as session:
                    query = select(func.max(Event.id))
                    top = (await session.execute(query)).scalar_one_or_none() or 0
                self._marks.append((started, time.monotonic(), top))
            except Exception:
                log.warning("reading the newest event failed", exc_info=True)
                await asyncio.sleep(self.interval)
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # the database may be briefly away; the next read tries
                log.warning("checking for other processes' events failed", exc_info=True)

    async def check(self) -> None:
        started = time.monotonic()
        floor = self._marks[0][2]
        newest: dict[str | None, int] = {}
        async with self.db.read_sessions() as session:
            if self.bus.subscribed():
                by_account = (
                    select(Event.account_id, func.max(Event.id))
                    .where(Event.id > floor)
                    .group_by(Event.account_id)
                )
                newest = {a: last for a, last in await session.execute(by_account)}
                top = max(newest.values(), default=floor)
            else:
                highest = select(func.max(Event.id)).where(Event.id > floor)
                top = (await session.execute(highest)).scalar_one_or_none() or floor
        self._marks.append((started, time.monotonic(), top))
        # The floor of the next read: the newest mark that ended SETTLE before this one began.
        horizon = started - SETTLE.total_seconds()
        while len(self._marks) > 1 and self._marks[1][1] <= horizon:
            self._marks.popleft()
        # What the streams were handed is taken after the read: this process's commits that the
        # read saw have (nearly always) been handed over by now, and are not news.
        seen = self.bus.seen()
        news = [a for a, last in newest.items() if a is not None and last > seen.get(a, last)]
        if news:
            self.bus.stale(news)
