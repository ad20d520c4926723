"""Link attempts in the database: open one (single-flight), record progress, close it once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.event_types import EventType
from wagate.core.states import LINKABLE_STATUSES, AccountStatus, AttemptOutcome, LinkMethod
from wagate.db.models import Account, Event, LinkAttempt
from wagate.db.outbox import record
from wagate.errors import Conflict
from wagate.services.accounts import change_status


async def open_attempt_of(session: AsyncSession, account_id: str) -> LinkAttempt | None:
    query = select(LinkAttempt).where(LinkAttempt.open_account_id == account_id)
    return (await session.execute(query)).scalar_one_or_none()


async def open_attempt(
    session: AsyncSession,
    account: Account,
    method: LinkMethod,
    phone: str | None,
    now: datetime,
) -> tuple[LinkAttempt, bool]:
    """The open attempt (``False``: it already existed) or a new one (``True``).

    The account row is locked by the caller; the unique index over ``open_account_id`` is the
    backstop when two processes race.
    """
    existing = await open_attempt_of(session, account.id)
    if existing is not None:
        return existing, False
    status = AccountStatus(account.status)
    if status not in LINKABLE_STATUSES:
        raise Conflict(
            f"account is {status.value}; log it out before linking again",
            status=status.value,
        )
    attempt = LinkAttempt(
        account_id=account.id,
        method=method.value,
        phone=phone,
        started_at=now,
        last_activity_at=now,
    )
    session.add(attempt)
    await session.flush()
    change_status(session, account, AccountStatus.LINKING, now=now)
    record(
        session,
        account,
        EventType.LINK_STARTED,
        {"attempt_id": attempt.id, "method": method.value},
        now=now,
    )
    return attempt, True


def end_attempt(
    session: AsyncSession,
    account: Account,
    attempt: LinkAttempt,
    outcome: AttemptOutcome,
    reason: str | None,
    now: datetime,
) -> None:
    """Close the attempt with its one outcome and record ``link.succeeded`` or ``link.failed``."""
    if attempt.ended_at is not None:
        raise Conflict("link attempt already ended", attempt_id=attempt.id)
    attempt.ended_at = now
    attempt.outcome = outcome.value
    attempt.reason = reason
    attempt.last_activity_at = now
    data: dict[str, object] = {"attempt_id": attempt.id, "outcome": outcome.value}
    if outcome is AttemptOutcome.LINKED:
        data["phone"] = account.phone
        data["seconds"] = round((now - attempt.started_at).total_seconds(), 3)
        record(session, account, EventType.LINK_SUCCEEDED, data, now=now)
    else:
        data["reason"] = reason
        record(session, account, EventType.LINK_FAILED, data, now=now)


def abandon_link(
    session: AsyncSession,
    account: Account,
    attempt: LinkAttempt | None,
    outcome: AttemptOutcome,
    reason: str,
    now: datetime,
    *,
    status: AccountStatus = AccountStatus.UNLINKED,
) -> None:
    """End an unfinished link: close the attempt and move the account out of linking."""
    if attempt is not None:
        end_attempt(session, account, attempt, outcome, reason, now)
    if AccountStatus(account.status) is not status:
        change_status(session, account, status, reason, now=now)


async def list_attempts(session: AsyncSession, account_id: str) -> list[LinkAttempt]:
    query = (
        select(LinkAttempt)
        .where(LinkAttempt.account_id == account_id)
        .order_by(LinkAttempt.started_at.desc(), LinkAttempt.id)
    )
    return list((await session.execute(query)).scalars())


async def phone_holder(
    session: AsyncSession, workspace_id: str, phone: str, exclude: str
) -> Account | None:
    """The other account of the workspace that holds ``phone`` as linked, locked."""
    query = (
        select(Account)
        .where(
            Account.workspace_id == workspace_id,
            Account.linked_phone == phone,
            Account.id != exclude,
        )
        .with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class ShownCode:
    """The code an open attempt shows now, as its events recorded it: what any node can read,
    whichever node runs the attempt."""

    attempt_id: str
    method: str  # qr or code
    code: str
    index: int
    expires_at: datetime


async def shown_code(session: AsyncSession, account_id: str, now: datetime) -> ShownCode | None:
    """The newest code of the account's open attempt, unless it has expired."""
    attempt = await open_attempt_of(session, account_id)
    if attempt is None:
        return None
    kinds = (EventType.LINK_QR.value, EventType.LINK_PAIR_CODE.value)
    query = (
        select(Event)
        .where(Event.account_id == account_id, Event.type.in_(kinds))
        .order_by(Event.seq.desc())
        .limit(1)
    )
    event = (await session.execute(query)).scalar_one_or_none()
    if event is None or event.data.get("attempt_id") != attempt.id:
        return None
    expires_at = datetime.fromisoformat(event.data["expires_at"])
    if expires_at <= now:
        return None
    qr = event.type == EventType.LINK_QR.value
    return ShownCode(
        attempt.id,
        LinkMethod.QR.value if qr else LinkMethod.CODE.value,
        event.data["code"],
        int(event.data.get("index", 0)),
        expires_at,
    )
