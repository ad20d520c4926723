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

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.accounts import Caller, get_account
from wagate.models import Event, envelope, utcnow

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
    return [row for row in rows if row.id <= horizon]


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


async def last_event_id(session: AsyncSession, account_id: str) -> int:
    query = select(Event.id).where(Event.account_id == account_id).order_by(Event.id.desc())
    return (await session.execute(query.limit(1))).scalar_one_or_none() or 0


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
