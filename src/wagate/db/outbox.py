"""Events are written in the same transaction as the change that causes them, together with a
webhook delivery row for each when the workspace has a webhook URL (DESIGN §1, §7).

When a dispatcher runs in this process (``Database.claim_at_birth``), a
new delivery of an account with nothing else pending is *claimed at birth*: written already
leased, and handed to the dispatcher once the transaction commits, so it is sent without a claim
of its own. One behind others still pending waits its turn in the table, as every delivery of
another process does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from wagate.core.event_types import EventType
from wagate.core.statuses import DeliveryStatus
from wagate.db import notes
from wagate.db.database import touch
from wagate.db.models import Account, Event, WebhookDelivery, Workspace, envelope, new_id, utcnow
from wagate.db.notes import Job


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
    notes.of(session).unflushed.append(event)
    touch(session, account.id, event)
    return event


# Built once: these run in every transaction that records an event.
_TARGETS_OF = select(
    Workspace.id, Workspace.webhook_url, Workspace.webhook_format, Workspace.webhook_secret
).where(Workspace.id.in_(bindparam("workspaces", expanding=True)))
_PENDING_OF = (
    select(WebhookDelivery.account_id)
    .where(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.account_id.in_(bindparam("accounts", expanding=True)),
    )
    .distinct()
)
_INSERT = insert(WebhookDelivery)


@event.listens_for(Session, "after_flush")
def _add_deliveries(session: Session, _flush: Any) -> None:
    tx = notes.of(session)
    if not tx.unflushed:
        return
    flushed = [e for e in tx.unflushed if e.id is not None]
    tx.unflushed = [e for e in tx.unflushed if e.id is None]
    targets = tx.targets
    connection = session.connection()
    missing = {e.workspace_id for e in flushed} - targets.keys()
    if missing:
        found = connection.execute(_TARGETS_OF, {"workspaces": list(missing)})
        targets.update(dict.fromkeys(missing))
        for workspace_id, url, format_, secret in found:
            if url:
                targets[workspace_id] = (url, format_ or "wagate", secret)
    hooked = [e for e in flushed if targets.get(e.workspace_id) is not None]
    if not hooked:
        return
    lease = tx.birth_lease
    busy: set[str | None] = {None}  # rows without an account are never claimed at birth
    if lease is not None:
        accounts = list({e.account_id for e in hooked} - busy)
        busy.update(a for (a,) in connection.execute(_PENDING_OF, {"accounts": accounts}))
    now = utcnow()
    until = now + timedelta(seconds=lease or 0.0)
    rows_out: list[dict[str, Any]] = []
    for e in hooked:
        birth = lease is not None and e.account_id not in busy
        delivery_id = new_id()
        rows_out.append(
            {
                "id": delivery_id,
                "event_id": e.id,
                "workspace_id": e.workspace_id,
                "account_id": e.account_id,
                "status": DeliveryStatus.PENDING,
                "attempts": 1 if birth else 0,
                "next_attempt_at": until if birth else e.created_at,
                "created_at": e.created_at,
            }
        )
        if birth:
            target = targets[e.workspace_id]
            assert target is not None
            url, format_, secret = target
            job = Job(
                delivery_id=delivery_id,
                account_id=e.account_id,
                attempts=1,
                event=envelope(e),
                workspace_id=e.workspace_id,
                url=url,
                format=format_,
                secret=secret,
                until=until,
            )
            tx.born.append(job)
        elif e.account_id is not None:
            tx.queued.add(e.account_id)
    connection.execute(_INSERT, rows_out)
