"""Messages: sending with an idempotency key, statuses from the engine's receipts, incoming
messages. Every stored change and its ``message.*`` event share one transaction."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.accounts import Caller, get_account, lock_account
from wagate.engines.base import MessageReceived, MessageStatus
from wagate.errors import Conflict, EngineUnavailable, NotFound, WagateError
from wagate.models import Account, Message, new_id, utcnow
from wagate.outbox import EventType, record
from wagate.states import AccountStatus

if TYPE_CHECKING:
    from wagate.engine_events import Ctx
    from wagate.sessions import SessionManager

log = logging.getLogger("wagate.messaging")

# Receipts only move a message forward: a late "delivered" never undoes "read".
RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
STAMPS = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at"}


async def send(
    manager: SessionManager,
    caller: Caller,
    account_id: str,
    to: str,
    text: str,
    client_ref: str | None = None,
) -> Message:
    """Queue a text and hand it to the engine; a known ``client_ref`` returns its message.

    The account's lock is held until the engine's message id is stored, so a receipt for it
    (applied under the same lock) always finds the message.
    """
    manager.check_accepting()
    async with manager.lock(account_id):

        async def claim(session: AsyncSession) -> tuple[Message, bool]:
            account = await get_account(session, caller, account_id, lock=True)
            if client_ref is not None:
                existing = await _by_ref(session, account.id, client_ref)
                if existing is not None:
                    return existing, False
            if account.status != AccountStatus.CONNECTED.value:
                raise Conflict(
                    f"account is {account.status}; only a connected account can send",
                    status=account.status,
                )
            message = Message(
                account_id=account.id,
                direction="out",
                chat=to,
                text=text,
                status="queued",
                client_ref=client_ref,
            )
            session.add(message)
            await session.flush()
            return message, True

        # A unique-key race on client_ref (another process) reruns ``claim``, which then finds
        # the winner's message.
        message, created = await manager.db.run(claim, retry_integrity=True)
        if not created:
            return message
        try:
            wa_id = await manager.call(manager.engine.send_text(account_id, to, text))
        except EngineUnavailable as exc:
            # The session dropped before the database heard of it (a reconnect under way):
            # nothing was sent, so nothing is kept and the client_ref stays free.
            await manager.db.run(lambda s: _forget(s, message.id))
            raise Conflict(
                "the account's session is not connected right now; retry when it is"
            ) from exc
        except Exception as exc:
            await manager.db.run(lambda s: _fail(s, message.id, "engine_error"))
            log.warning(
                "message not sent",
                extra={"account_id": account_id, "message_id": message.id},
            )
            if isinstance(exc, WagateError):
                raise
            raise EngineUnavailable("the engine could not send the message") from exc
        return await manager.db.run(lambda s: _store_wa_id(s, message.id, wa_id))


async def get_message(
    session: AsyncSession, caller: Caller, account_id: str, message_id: str
) -> Message:
    """A message of an account the caller may see; anything else is not found."""
    await get_account(session, caller, account_id)
    message = await session.get(Message, message_id)
    if message is None or message.account_id != account_id:
        raise NotFound("message not found", message_id=message_id)
    return message


async def _by_ref(session: AsyncSession, account_id: str, client_ref: str) -> Message | None:
    query = select(Message).where(
        Message.account_id == account_id, Message.client_ref == client_ref
    )
    return (await session.execute(query)).scalar_one_or_none()


async def _store_wa_id(session: AsyncSession, message_id: str, wa_id: str) -> Message:
    message = await session.get(Message, message_id)
    assert message is not None
    message.wa_id = wa_id
    message.updated_at = utcnow()
    await session.flush()
    return message


async def _forget(session: AsyncSession, message_id: str) -> None:
    message = await session.get(Message, message_id)
    if message is not None:
        await session.delete(message)


async def _fail(session: AsyncSession, message_id: str, reason: str) -> None:
    message = await session.get(Message, message_id)
    if message is None:
        return
    account = await lock_account(session, message.account_id)
    if account is not None:
        _set_status(session, account, message, "failed", reason=reason)


def _set_status(
    session: AsyncSession,
    account: Account,
    message: Message,
    status: str,
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
        "status": status,
        "client_ref": message.client_ref,
    }
    if reason is not None:
        data["reason"] = reason
    record(session, account, EventType.MESSAGE_STATUS, data, now=now)


def _moves_forward(current: str, status: str) -> bool:
    if status == "failed":
        return current in ("queued", "sent")
    return status in RANK and current in RANK and RANK[status] > RANK[current]


async def on_message_status(mgr: SessionManager, ctx: Ctx, event: MessageStatus) -> None:
    """A receipt for a sent message: queued → sent → delivered → read (or failed)."""
    query = select(Message).where(
        Message.account_id == ctx.account.id,
        Message.wa_id == event.wa_id,
        Message.direction == "out",
    )
    message = (await ctx.session.execute(query)).scalars().first()
    if message is None:
        # Sent from the phone itself or before wagate knew the account: nothing to update.
        log.debug("receipt for an unknown message", extra={"account_id": ctx.account.id})
        return
    if _moves_forward(message.status, event.status):
        _set_status(ctx.session, ctx.account, message, event.status)


async def incoming_stored(session: AsyncSession, account_id: str, wa_ids: list[str]) -> set[str]:
    """Which of ``wa_ids`` the account has already stored as incoming messages."""
    query = select(Message.wa_id).where(
        Message.account_id == account_id,
        Message.direction == "in",
        Message.wa_id.in_(wa_ids),
    )
    return {wa_id for wa_id in (await session.execute(query)).scalars() if wa_id is not None}


async def on_message_received(mgr: SessionManager, ctx: Ctx, event: MessageReceived) -> None:
    """Store an incoming message once (engines may deliver it again) and emit it."""
    wa_id = event.wa_id[:128]
    if ctx.incoming is None:
        if await incoming_stored(ctx.session, ctx.account.id, [wa_id]):
            return
    elif wa_id in ctx.incoming:
        return
    else:
        ctx.incoming.add(wa_id)
    message = Message(
        id=new_id(),  # known now: no flush needed before the event names it
        account_id=ctx.account.id,
        direction="in",
        chat=event.chat[:100],
        wa_id=wa_id,
        text=event.text,
        status="received",
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(message)
    data = {
        "message_id": message.id,
        "wa_id": message.wa_id,
        "chat": event.chat,
        "from": event.sender,
        "text": event.text,
        "timestamp": event.timestamp.isoformat(),
    }
    record(ctx.session, ctx.account, EventType.MESSAGE_RECEIVED, data, now=ctx.now)
