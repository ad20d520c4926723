"""The event log for polling consumers, and one account's events as Server-Sent Events."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import SQLAlchemyError

from wagate.api.deps import CallerDep, GatewayDep, SessionDep
from wagate.api.schemas import MAX_EVENT_ID, ErrorBody, EventPage
from wagate.db.models import Event, envelope
from wagate.errors import InvalidInput
from wagate.gateway import Gateway
from wagate.services import event_log
from wagate.services.accounts import get_account

log = logging.getLogger("wagate.api.events")

KEEPALIVE_SECONDS = 15.0
# Events read from the database at once by one stream.
READ = 500

router = APIRouter(
    tags=["events"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        404: {"model": ErrorBody, "description": "Account not found"},
    },
)


@router.get("/v1/events", response_model=EventPage)
async def poll(
    caller: CallerDep,
    session: SessionDep,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_EVENT_ID, description="The last event id seen; 0 from the start."),
    ] = 0,
    account_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """Events after ``after`` in id order: a workspace key sees its own, the admin key all.
    Pass ``next_after`` as ``after`` to read on."""
    rows = await event_log.page(session, caller, after=after, limit=limit, account_id=account_id)
    return EventPage(
        events=[envelope(row) for row in rows],
        next_after=rows[-1].id if rows else after,
    )


@router.get(
    "/v1/accounts/{account_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream"}},
)
async def stream(
    account_id: str,
    caller: CallerDep,
    gateway: GatewayDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Replay from this event id.")
    ] = None,
) -> StreamingResponse:
    """Every event of the account as Server-Sent Events (``id``, ``event``, ``data``).

    Resumes after ``Last-Event-ID`` (or ``?after=``; ``?after=0`` replays the whole history);
    without either it starts with the next event. A comment line every 15 s keeps proxies from
    closing an idle stream."""
    cursor = _cursor(last_event_id, after)
    async with gateway.db.read_sessions() as session:
        await get_account(session, caller, account_id)
        # The account's seq at the cursor: the events handed over next follow on from it.
        if cursor is None:
            cursor, seq = await event_log.last_event(session, account_id)
        else:
            _, seq = await event_log.last_event(session, account_id, upto=cursor)
    return StreamingResponse(
        _frames(gateway, account_id, cursor, seq),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _cursor(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return after
    try:
        value = int(last_event_id)
    except ValueError:
        raise InvalidInput("Last-Event-ID must be an event id") from None
    if not 0 <= value <= MAX_EVENT_ID:
        raise InvalidInput("Last-Event-ID must be an event id")
    return value


async def _frames(
    gateway: Gateway, account_id: str, cursor: int, seq: int | None
) -> AsyncIterator[bytes]:
    """Send the account's events after the cursor, then those the bus hands over as they
    commit; read the database instead whenever what was handed over does not follow on from
    the cursor (``seq`` skips, another process committed, a backlog was dropped), so a missed
    hand-over costs latency and never an event."""
    gateway.metrics.sse_streams.inc()
    log.debug("event stream opened", extra={"account_id": account_id, "after": cursor})
    subscription = gateway.bus.subscribe(account_id)
    # Streams opened together would all send their keep-alives in the same instant, every
    # KEEPALIVE_SECONDS: the first one comes at a random point of the first period instead.
    last_sent = time.monotonic() - random.uniform(0.0, KEEPALIVE_SECONDS)
    read = True  # first: whatever came after the cursor
    try:
        yield b"retry: 2000\n\n"
        while not gateway.stopping:
            seen = gateway.bus.mark(account_id)
            handed, stale = subscription.take()
            handed = [event for event in handed if event.id > cursor]
            if handed and not (read or stale) and _follows(seq, handed):
                for event in handed:
                    yield event_log.sse_frame(event)
                cursor, seq = handed[-1].id, handed[-1].seq
                last_sent = time.monotonic()
                continue
            if read or stale or handed:
                try:
                    async with gateway.stream_reads, gateway.db.read_sessions() as session:
                        rows = await event_log.account_events(session, account_id, cursor, READ)
                except SQLAlchemyError:
                    log.warning("event stream lost the database", extra={"account_id": account_id})
                    return
                for row in rows:
                    yield event_log.sse_frame(row)
                    cursor, seq = row.id, row.seq
                subscription.seen = max(subscription.seen, cursor)
                read = len(rows) == READ  # a full page: there may be more
                if rows:
                    last_sent = time.monotonic()
                    continue
            idle = time.monotonic() - last_sent
            if idle >= KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
                continue
            await gateway.bus.wait(KEEPALIVE_SECONDS - idle, since=seen, topic=account_id)
    finally:
        gateway.bus.unsubscribe(subscription)
        gateway.metrics.sse_streams.dec()
        log.debug("event stream closed", extra={"account_id": account_id, "after": cursor})


def _follows(seq: int | None, handed: list[Event]) -> bool:
    """Whether ``handed`` continues the account's events right after ``seq``, without a gap."""
    if seq is None:
        return False
    return all(event.seq == seq + n for n, event in enumerate(handed, start=1))
