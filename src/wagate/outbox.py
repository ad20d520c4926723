"""Events are written in the same transaction as the change that causes them (DESIGN §1, §7)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wagate import deliveries
from wagate.db import touch
from wagate.models import Account, Event, utcnow


class EventType(StrEnum):
    """Event types (contract)."""

    ACCOUNT_STATUS = "account.status"
    LINK_STARTED = "link.started"
    LINK_QR = "link.qr"
    LINK_PAIR_CODE = "link.pair_code"
    LINK_PAIRED = "link.paired"
    LINK_SUCCEEDED = "link.succeeded"
    LINK_FAILED = "link.failed"
    SESSION_CONNECTED = "session.connected"
    SESSION_DISCONNECTED = "session.disconnected"
    SESSION_LOGGED_OUT = "session.logged_out"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_STATUS = "message.status"


def record(
    session: AsyncSession,
    account: Account,
    type_: EventType,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
) -> Event:
    """Add an event for ``account``; the caller holds the account row in this transaction,
    so ``seq`` (the account's ``last_seq`` + 1) is gap-free and ordered per account.
    A webhook delivery row joins it in the same transaction when the workspace has a URL."""
    account.last_seq += 1
    event = Event(
        workspace_id=account.workspace_id,
        account_id=account.id,
        seq=account.last_seq,
        type=type_.value,
        data=data,
        created_at=now or utcnow(),
    )
    session.add(event)
    deliveries.track(session, event)
    touch(session, account.id, event)
    return event
