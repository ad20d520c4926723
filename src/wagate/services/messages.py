"""Messages in the database: the idempotent claim of an outgoing one, statuses from receipts,
incoming messages stored once. Every stored change and its ``message.*`` event share one
transaction."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.core.event_types import EventType
from wagate.core.states import AccountStatus
from wagate.core.statuses import MessageDirection, MessageStatus
from wagate.db.models import Account, Message, new_id, utcnow
from wagate.db.outbox import record
from wagate.errors import Conflict, NotFound
from wagate.services.accounts import get_account, lock_account

log = logging.getLogger("wagate.messaging")

M = MessageStatus
# Receipts only move a message forward: a late "delivered" never undoes "read".
RANK = {M.QUEUED: 0, M.SENT: 1, M.DELIVERED: 2, M.READ: 3}
STAMPS = {M.SENT: "sent_at", M.DELIVERED: "delivered_at", M.READ: "read_at"}


async def get_message(
    session: AsyncSession, caller: Caller, account_id: str, message_id: str
) -> Message:
    """A message of an account the caller may see; anything else is not found."""
    await get_account(session, caller, account_id)
    message = await session.get(Message, message_id)
    if message is None or message.account_id != account_id:
        raise NotFound("message not found", message_id=message_id)
    return message


async def claim(
    session: AsyncSession,
    caller: Caller,
    account_id: str,
    to: str,
    text: str,
    client_ref: str | None,
) -> tuple[Message, bool]:
    """A new ``queued`` message of a connected account, or the one ``client_ref`` already names
    (then ``False``)."""
    account = await get_account(session, caller, account_id, lock=True)
    if client_ref is not None:
        existing = await _by_ref(session, account.id, client_ref)
        if existing is not None:
            return existing, False
    if account.status != AccountStatus.CONNECTED:
        raise Conflict(
            f"account is {account.status}; only a connected account can send",
            status=account.status,
        )
    message = Message(
        account_id=account.id,
        direction=MessageDirection.OUT,
        chat=to,
        text=text,
        status=M.QUEUED,
        client_ref=client_ref,
    )
    session.add(message)
    await session.flush()
    return message, True


async def _by_ref(session: AsyncSession, account_id: str, client_ref: str) -> Message | None:
    query = select(Message).where(
        Message.account_id == account_id, Message.client_ref == client_ref
    )
    return (await session.execute(query)).scalar_one_or_none()


async def store_wa_id(session: AsyncSession, message_id: str, wa_id: str) -> Message:
    """The engine took the message: keep the id WhatsApp gave it (receipts name it)."""
    message = await session.get(Message, message_id)
    assert message is not None
    message.wa_id = wa_id
    message.updated_at = utcnow()
    await session.flush()
    return message


async def forget(session: AsyncSession, message_id: str) -> None:
    """Remove a claimed message that was never sent (its ``client_ref`` becomes free again)."""
    message = await session.get(Message, message_id)
    if message is not None:
        await session.delete(message)


async def fail(session: AsyncSession, message_id: str, reason: str) -> None:
    """Mark a claimed message ``failed`` with ``reason``."""
    message = await session.get(Message, message_id)
    if message is None:
        return
    account = await lock_account(session, message.account_id)
    if account is not None:
        _set_status(session, account, message, M.FAILED, reason=reason)


async def settle_stale(session: AsyncSession, cutoff: datetime, limit: int = 500) -> int:
    """Outgoing messages still ``queued`` since before ``cutoff``: the process that sent them
    stopped (a crash, a kill) between the claim and the receipts. One the engine took (it has
    a WhatsApp id) went out: it is ``sent``, and later receipts move it on. One without an id
    may or may not have reached WhatsApp, and the engine cannot resend it under the same id, so
    it is ``failed`` with reason ``send_interrupted`` rather than risk sending it twice. Returns
    how many were settled."""
    query = (
        select(Message.id, Message.account_id)
        .where(
            Message.direction == MessageDirection.OUT,
            Message.status == M.QUEUED,
            Message.updated_at < cutoff,
        )
        .order_by(Message.account_id)
        .limit(limit)
    )
    settled = 0
    for message_id, account_id in (await session.execute(query)).all():
        account = await lock_account(session, account_id)
        # Read as it is now that its account is locked: a receipt may have moved it on.
        message = await session.get(Message, message_id, populate_existing=True)
        if account is None or message is None or message.status != M.QUEUED:
            continue
        if message.wa_id is not None:
            _set_status(session, account, message, M.SENT)
        else:
            _set_status(session, account, message, M.FAILED, reason="send_interrupted")
        settled += 1
    return settled


def _set_status(
    session: AsyncSession,
    account: Account,
    message: Message,
    status: MessageStatus,
    *,
    reason: str | None = None,
) -> None:
    now = utcnow()
    message.status = status
    message.updated_at = now
    if status in STAMPS:
        setattr(message, STAMPS[status], now)
    data: dict[str, object] = {
        "message_id": message.id,
        "wa_id": message.wa_id,
        "chat": message.chat,
        "status": status.value,
        "client_ref": message.client_ref,
    }
    if reason is not None:
        data["reason"] = reason
    record(session, account, EventType.MESSAGE_STATUS, data, now=now)


def _moves_forward(current: MessageStatus, status: MessageStatus) -> bool:
    if status is M.FAILED:
        return current in (M.QUEUED, M.SENT)
    return status in RANK and current in RANK and RANK[status] > RANK[current]


async def apply_receipt(session: AsyncSession, account: Account, wa_id: str, status: str) -> None:
    """A receipt for a sent message: queued → sent → delivered → read (or failed)."""
    query = select(Message).where(
        Message.account_id == account.id,
        Message.wa_id == wa_id,
        Message.direction == MessageDirection.OUT,
    )
    message = (await session.execute(query)).scalars().first()
    if message is None:
        # Sent from the phone itself or before wagate knew the account: nothing to update.
        log.debug("receipt for an unknown message", extra={"account_id": account.id})
        return
    try:
        new = MessageStatus(status)
    except ValueError:
        log.debug("receipt with an unknown status", extra={"account_id": account.id})
        return
    if _moves_forward(MessageStatus(message.status), new):
        _set_status(session, account, message, new)


async def incoming_stored(session: AsyncSession, account_id: str, wa_ids: list[str]) -> set[str]:
    """Which of ``wa_ids`` the account has already stored as incoming messages."""
    query = select(Message.wa_id).where(
        Message.account_id == account_id,
        Message.direction == MessageDirection.IN,
        Message.wa_id.in_(wa_ids),
    )
    return {wa_id for wa_id in (await session.execute(query)).scalars() if wa_id is not None}


async def store_incoming(
    session: AsyncSession,
    account: Account,
    *,
    wa_id: str,
    chat: str,
    sender: str,
    text: str,
    timestamp: datetime,
    now: datetime,
    known: set[str] | None = None,
) -> None:
    """Store an incoming message once (engines may deliver it again) and emit it. ``known``:
    the account's stored incoming wa_ids, when a batch looked them up at once (this one is
    added to it)."""
    wa_id = wa_id[:128]
    if known is None:
        if await incoming_stored(session, account.id, [wa_id]):
            return
    elif wa_id in known:
        return
    else:
        known.add(wa_id)
    message = Message(
        id=new_id(),  # known now: no flush needed before the event names it
        account_id=account.id,
        direction=MessageDirection.IN,
        chat=chat[:100],
        wa_id=wa_id,
        text=text,
        status=M.RECEIVED,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    data = {
        "message_id": message.id,
        "wa_id": message.wa_id,
        "chat": chat,
        "from": sender,
        "text": text,
        "timestamp": timestamp.isoformat(),
    }
    record(session, account, EventType.MESSAGE_RECEIVED, data, now=now)
