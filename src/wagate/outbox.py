"""Events are written in the same transaction as the change that causes them, together with a
webhook delivery row for each when the workspace has a webhook URL (DESIGN §1, §7).

When a dispatcher runs in this process (it sets ``BIRTH_LEASE`` in the write sessions' info), a
new delivery of an account with nothing else pending is *claimed at birth*: written already
leased, and handed to the dispatcher once the transaction commits, so it is sent without a claim
of its own. One behind others still pending waits its turn in the table, as every delivery of
another process does.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from wagate.db import touch
from wagate.deliveries import PENDING, Job
from wagate.models import Account, Event, WebhookDelivery, Workspace, envelope, new_id, utcnow


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


# Key in ``Session.info``, set by a running dispatcher: the lease (seconds) of a claim at birth.
BIRTH_LEASE = "wagate.outbox.birth_lease"
# Keys in ``Session.info``: events not yet given a delivery; the workspaces' webhook targets read
# in this transaction; deliveries claimed at birth; accounts whose new deliveries wait behind
# pending ones.
_TRACKED = "wagate.outbox.tracked"
_TARGETS = "wagate.outbox.targets"
_BORN = "wagate.outbox.born"
_QUEUED = "wagate.outbox.queued"

# (url, format, encrypted secret) of a workspace's webhook; None when it has no URL.
Target = tuple[str, str, str] | None


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
    session.info.setdefault(_TRACKED, []).append(event)
    touch(session, account.id, event)
    return event


def born(info: Mapping[str, Any]) -> list[Job] | None:
    """The deliveries a committed transaction claimed at birth, in order; None when it could
    not claim any (no dispatcher in this process)."""
    if BIRTH_LEASE not in info:
        return None
    jobs: list[Job] = info.get(_BORN, [])
    return jobs


def queued(info: Mapping[str, Any]) -> set[str]:
    """Accounts a committed transaction gave deliveries that wait behind pending ones."""
    accounts: set[str] = info.get(_QUEUED, set())
    return accounts


# Built once: these run in every transaction that records an event.
_TARGETS_OF = select(
    Workspace.id, Workspace.webhook_url, Workspace.webhook_format, Workspace.webhook_secret
).where(Workspace.id.in_(bindparam("workspaces", expanding=True)))
_PENDING_OF = (
    select(WebhookDelivery.account_id)
    .where(
        WebhookDelivery.status == PENDING,
        WebhookDelivery.account_id.in_(bindparam("accounts", expanding=True)),
    )
    .distinct()
)
_INSERT = insert(WebhookDelivery)


def _targets(session: Session) -> dict[str, Target]:
    # Keyed by the transaction: a session that outlives one must not reuse what it read. The
    # reference is weak: the session's info must not hold the session in a cycle (every write
    # session would then wait for the cyclic garbage collector).
    transaction = session.get_transaction()
    cached = session.info.get(_TARGETS)
    if cached is None or cached[0]() is not transaction:
        cached = (weakref.ref(transaction), {})
        session.info[_TARGETS] = cached
    targets: dict[str, Target] = cached[1]
    return targets


@event.listens_for(Session, "after_flush")
def _add_deliveries(session: Session, _flush: Any) -> None:
    tracked: list[Event] | None = session.info.get(_TRACKED)
    if not tracked:
        return
    flushed = [e for e in tracked if e.id is not None]
    session.info[_TRACKED] = [e for e in tracked if e.id is None]
    targets = _targets(session)
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
    lease: float | None = session.info.get(BIRTH_LEASE)
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
                "status": PENDING,
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
            session.info.setdefault(_BORN, []).append(job)
        elif e.account_id is not None:
            session.info.setdefault(_QUEUED, set()).add(e.account_id)
    connection.execute(_INSERT, rows_out)
