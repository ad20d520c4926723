"""Webhook deliveries in the database (DESIGN §7): created in the transaction of their event (see
``wagate.db.outbox``), claimed by the dispatcher, settled after each attempt, listed and replayed.

The table is the whole state of delivery, so a restart resumes where the last process stopped:
a claimed row carries a lease (``next_attempt_at`` pushed past the request timeout), and a
process that dies mid-request leaves a row that simply becomes due again when the lease ends.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Subquery, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Bundle

from wagate.core.caller import Caller
from wagate.core.statuses import DeliveryStatus
from wagate.db.database import touch
from wagate.db.models import ENVELOPE_COLUMNS, Event, WebhookDelivery, Workspace, envelope, utcnow
from wagate.db.notes import Job
from wagate.errors import Conflict, NotFound

# The bus topic of a commit that made deliveries due without recording events (a replay).
QUEUE = "wagate.deliveries"


def _heads() -> Subquery:
    """The event id of each account's oldest pending delivery: only these may be sent, so an
    account's deliveries go out in ``seq`` order (an index on (status, account_id, event_id)
    makes this a walk over pending rows only, however long the delivered history)."""
    return (
        select(func.min(WebhookDelivery.event_id).label("event_id"))
        .where(WebhookDelivery.status == DeliveryStatus.PENDING)
        .group_by(WebhookDelivery.account_id)
        .subquery()
    )


def _not_busy(busy: Collection[str | None]) -> list[ColumnElement[bool]]:
    """Leave out the accounts whose delivery is in flight (``None``: rows without account)."""
    conditions: list[ColumnElement[bool]] = []
    accounts = [account_id for account_id in busy if account_id is not None]
    if accounts:
        conditions.append(
            WebhookDelivery.account_id.is_(None) | WebhookDelivery.account_id.not_in(accounts)
        )
    if None in busy:
        conditions.append(WebhookDelivery.account_id.is_not(None))
    return conditions


async def due(
    session: AsyncSession, now: datetime, limit: int, busy: Collection[str | None] = ()
) -> tuple[list[str], datetime | None]:
    """Ids of up to ``limit`` sendable deliveries due at ``now`` (none of the ``busy``
    accounts), and when the next one not yet due comes due."""
    heads = _heads()
    ids: list[str] = []
    if limit > 0:
        query = (
            select(WebhookDelivery.id)
            .join(heads, WebhookDelivery.event_id == heads.c.event_id)
            .where(WebhookDelivery.next_attempt_at <= now, *_not_busy(busy))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_id)
            .limit(limit)
        )
        ids = list((await session.execute(query)).scalars())
    later = (
        select(func.min(WebhookDelivery.next_attempt_at))
        .join(heads, WebhookDelivery.event_id == heads.c.event_id)
        .where(WebhookDelivery.next_attempt_at > now)
    )
    return ids, (await session.execute(later)).scalar_one_or_none()


async def claim(session: AsyncSession, ids: list[str], now: datetime, lease: float) -> list[Job]:
    """Take the rows still due (another process may have taken some): each attempt is counted
    when it is claimed, so a process killed mid-request still used it up."""
    until = now + timedelta(seconds=lease)
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id.in_(ids),
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    # The rows this statement took carry its lease; on PostgreSQL and MySQL they stay locked
    # until the commit, so a concurrent claim of another process finds them taken. The event is
    # read as plain columns (no ORM object): this runs for every delivery.
    recorded: Bundle[Any] = Bundle("event", *ENVELOPE_COLUMNS)
    query = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.account_id,
            WebhookDelivery.attempts,
            WebhookDelivery.workspace_id,
            recorded,
            Workspace.webhook_url,
            Workspace.webhook_format,
            Workspace.webhook_secret,
        )
        .join(Event, Event.id == WebhookDelivery.event_id)
        .outerjoin(Workspace, Workspace.id == WebhookDelivery.workspace_id)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.next_attempt_at == until)
        .order_by(WebhookDelivery.event_id)
    )
    return [
        Job(
            delivery_id=delivery_id,
            account_id=account_id,
            attempts=attempts,
            event=envelope(event_row),
            workspace_id=workspace_id,
            url=url,
            format=format_ or "wagate",
            secret=secret,
            until=until,
        )
        for (
            delivery_id,
            account_id,
            attempts,
            workspace_id,
            event_row,
            url,
            format_,
            secret,
        ) in await session.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: delivered (``error`` None), failed and due again at ``retry_at``,
    or dead (an error and no ``retry_at``)."""

    delivery_id: str
    account_id: str | None
    now: datetime
    status: int | None
    error: str | None
    retry_at: datetime | None

    @property
    def result(self) -> str:
        if self.error is None:
            return "delivered"
        return "dead" if self.retry_at is None else "failed"


async def settle(
    session: AsyncSession,
    outcomes: list[Outcome],
    *,
    lease: float | None = None,
    depth: int = 1,
    unsent: Collection[str] = (),
    looking: Collection[str | None] | None = None,
) -> list[Job]:
    """Record the results of a batch of attempts. With ``lease``, each account whose delivery
    left the queue (delivered or dead) has its next deliveries (up to ``depth``) claimed at once
    when they are due, in this same transaction: the sender carries on without waiting for a
    dispatch round (only for the accounts in ``looking``, when given). ``unsent`` deliveries were
    claimed and never sent: they get their attempt back and are due again."""
    if unsent:
        await release(session, list(unsent), utcnow(), refund=True)
    delivered: dict[int | None, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.result == "delivered":
            delivered.setdefault(outcome.status, []).append(outcome)
            continue
        values: dict[str, Any] = {"last_status": outcome.status, "last_error": outcome.error}
        if outcome.retry_at is None:
            values.update(status=DeliveryStatus.DEAD)
        else:
            values.update(next_attempt_at=outcome.retry_at)
        await _update(session, [outcome.delivery_id], values)
    for status, group in delivered.items():
        values = {
            "status": DeliveryStatus.DELIVERED,
            "delivered_at": min(o.now for o in group),
            "last_status": status,
            "last_error": None,
        }
        await _update(session, [o.delivery_id for o in group], values)
    if lease is None:
        return []
    moved = {o.account_id for o in outcomes if o.result != "failed"} - {None}
    if looking is not None:
        moved &= set(looking)
    if not moved:
        return []
    now = max(o.now for o in outcomes)
    ids = await due_prefixes(session, moved, now, depth)
    return await claim(session, ids, now, lease) if ids else []


async def due_prefixes(
    session: AsyncSession, accounts: Collection[str | None], now: datetime, depth: int
) -> list[str]:
    """Each account's first pending deliveries, up to ``depth`` of them and up to the first
    that is not due (a retry waiting, or one already claimed)."""
    place = (
        func.row_number()
        .over(partition_by=WebhookDelivery.account_id, order_by=WebhookDelivery.event_id)
        .label("place")
    )
    pending = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.account_id,
            WebhookDelivery.next_attempt_at,
            place,
        )
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.account_id.in_(accounts),
        )
        .subquery()
    )
    query = (
        select(pending.c.id, pending.c.account_id, pending.c.next_attempt_at)
        .where(pending.c.place <= depth)
        .order_by(pending.c.account_id, pending.c.place)
    )
    ids: list[str] = []
    blocked: set[str | None] = set()
    for delivery_id, account_id, next_attempt_at in await session.execute(query):
        if account_id in blocked or next_attempt_at > now:
            blocked.add(account_id)
        else:
            ids.append(delivery_id)
    return ids


async def _update(session: AsyncSession, ids: list[str], values: dict[str, Any]) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def release(
    session: AsyncSession, ids: list[str], now: datetime, *, refund: bool = False
) -> None:
    """Claimed deliveries are due again at once: cut short by shutdown, or (``refund``) never
    sent, which gives their attempt back."""
    values: dict[str, Any] = {"next_attempt_at": now}
    if refund:
        values["attempts"] = WebhookDelivery.attempts - 1
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _scope(caller: Caller) -> list[ColumnElement[bool]]:
    if caller.workspace_id is None:
        return []
    return [WebhookDelivery.workspace_id == caller.workspace_id]


async def page(
    session: AsyncSession,
    caller: Caller,
    *,
    status: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[tuple[WebhookDelivery, str]]:
    """Deliveries the caller may see with their event type, in event order after ``after``."""
    query = (
        select(WebhookDelivery, Event.type)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.event_id > after, *_scope(caller))
        .order_by(WebhookDelivery.event_id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return [(delivery, event_type) for delivery, event_type in await session.execute(query)]


async def retry(
    session: AsyncSession, caller: Caller, delivery_id: str, now: datetime | None = None
) -> tuple[WebhookDelivery, str]:
    """A dead or pending delivery becomes due now with its attempts reset."""
    query = (
        select(WebhookDelivery, Event.type)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id == delivery_id, *_scope(caller))
        .with_for_update()
    )
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise NotFound("webhook delivery not found", delivery_id=delivery_id)
    delivery, event_type = row
    if delivery.status == DeliveryStatus.DELIVERED:
        raise Conflict("the delivery was delivered already", delivery_id=delivery_id)
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now or utcnow()
    await session.flush()
    touch(session, QUEUE)
    return delivery, event_type


async def retry_dead(session: AsyncSession, caller: Caller, now: datetime | None = None) -> int:
    """Every dead delivery the caller may see becomes due now; returns how many."""
    query = (
        update(WebhookDelivery)
        .where(WebhookDelivery.status == DeliveryStatus.DEAD)
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    if caller.workspace_id is not None:
        query = query.where(WebhookDelivery.workspace_id == caller.workspace_id)
    result = await session.execute(query)
    touch(session, QUEUE)
    return int(result.rowcount)  # type: ignore[attr-defined]
