"""How each engine event changes an account: one handler per ``EngineEvent`` type.

Each handler runs inside the transaction ``SessionManager.apply`` opened, with the account row
locked; what must happen only after the commit (engine calls, showing a code, deleting
credentials) is appended to ``ctx.after``.
"""

from __future__ import annotations

import logging

from wagate.core.event_types import EventType
from wagate.core.states import AccountStatus, AttemptOutcome
from wagate.db.models import Account, Workspace
from wagate.db.outbox import record
from wagate.engines.base import (
    Banned,
    Connected,
    ConnectFailed,
    Disconnected,
    LinkExpired,
    LoggedOut,
    MessageReceived,
    MessageStatus,
    Outdated,
    PairCode,
    Paired,
    PairFailed,
    QrCode,
    Replaced,
)
from wagate.logs import WagateMessage
from wagate.services import messages
from wagate.services.accounts import change_status
from wagate.services.linking import abandon_link, end_attempt, open_attempt_of, phone_holder
from wagate.sessions.context import Ctx, Live

log = logging.getLogger("wagate.sessions")
S = AccountStatus


async def on_qr(ctx: Ctx, event: QrCode) -> None:
    if ctx.attempt is None or ctx.status is not S.LINKING:
        ctx.then_engine(lambda: ctx.engine.cancel_link(ctx.account.id))
        return
    attempt = ctx.attempt
    attempt.qr_count += 1
    attempt.first_qr_at = attempt.first_qr_at or ctx.now
    attempt.last_activity_at = ctx.now
    data = {
        "attempt_id": attempt.id,
        "index": event.index,
        "code": event.code,
        "expires_at": event.expires_at.isoformat(),
    }
    record(ctx.session, ctx.account, EventType.LINK_QR, data, now=ctx.now)
    live = ctx.runtime.live_codes.setdefault(ctx.account.id, Live(attempt.id))

    async def show() -> None:
        live.qr = event
        log.info(
            WagateMessage.QR_ISSUED,
            extra={
                "account_id": ctx.account.id,
                "attempt_id": attempt.id,
                "index": event.index,
            },
        )

    ctx.after.append(show)


async def on_pair_code(ctx: Ctx, event: PairCode) -> None:
    if ctx.attempt is None or ctx.status is not S.LINKING:
        ctx.then_engine(lambda: ctx.engine.cancel_link(ctx.account.id))
        return
    attempt = ctx.attempt
    attempt.first_qr_at = attempt.first_qr_at or ctx.now
    attempt.last_activity_at = ctx.now
    data = {
        "attempt_id": attempt.id,
        "code": event.code,
        "expires_at": event.expires_at.isoformat(),
    }
    record(ctx.session, ctx.account, EventType.LINK_PAIR_CODE, data, now=ctx.now)
    live = ctx.runtime.live_codes.setdefault(ctx.account.id, Live(attempt.id))

    async def show() -> None:
        live.pair_code = event

    ctx.after.append(show)


async def on_link_expired(ctx: Ctx, event: LinkExpired) -> None:
    if ctx.attempt is not None and ctx.status is S.LINKING:
        end(ctx, AttemptOutcome.EXPIRED, "link_expired")


async def on_pair_failed(ctx: Ctx, event: PairFailed) -> None:
    if ctx.attempt is not None and ctx.status in (S.LINKING, S.PAIRING):
        end(ctx, AttemptOutcome.FAILED, event.reason)


def end(
    ctx: Ctx,
    outcome: AttemptOutcome,
    reason: str,
    status: AccountStatus = S.UNLINKED,
) -> None:
    abandon_link(ctx.session, ctx.account, ctx.attempt, outcome, reason, ctx.now, status=status)
    if ctx.attempt is not None:
        attempt_id = ctx.attempt.id

        async def note() -> None:
            log.info(
                WagateMessage.ATTEMPT_ENDED,
                extra={
                    "account_id": ctx.account.id,
                    "attempt_id": attempt_id,
                    "outcome": outcome.value,
                    "reason": reason,
                },
            )

        ctx.after.append(note)


async def on_paired(ctx: Ctx, event: Paired) -> None:
    account, attempt = ctx.account, ctx.attempt
    if attempt is None or ctx.status is not S.LINKING:
        # A device linked for an attempt that is over: remove it again.
        ctx.then_engine(lambda: ctx.engine.logout(account.id))
        return
    workspace = await ctx.session.get(Workspace, account.workspace_id)
    holder = await phone_holder(ctx.session, account.workspace_id, event.phone, account.id)
    if holder is not None:
        if workspace is not None and workspace.link_policy == "reject":
            end(ctx, AttemptOutcome.FAILED, "phone_already_linked")
            ctx.then_engine(lambda: ctx.engine.logout(account.id))
            return
        await supersede(ctx, holder)
    account.phone = event.phone
    account.jid = event.jid
    attempt.paired_at = ctx.now
    attempt.last_activity_at = ctx.now
    change_status(ctx.session, account, S.PAIRING, now=ctx.now)
    data = {
        "attempt_id": attempt.id,
        "phone": event.phone,
        "jid": event.jid,
        "platform": event.platform,
    }
    record(ctx.session, account, EventType.LINK_PAIRED, data, now=ctx.now)

    async def note() -> None:
        log.info(
            WagateMessage.PHONE_PAIRED, extra={"account_id": account.id, "attempt_id": attempt.id}
        )

    ctx.after.append(note)


async def supersede(ctx: Ctx, holder: Account) -> None:
    """The phone now links into ``ctx.account``: the older account is logged out."""
    holder_attempt = await open_attempt_of(ctx.session, holder.id)
    if holder_attempt is not None:
        end_attempt(
            ctx.session,
            holder,
            holder_attempt,
            AttemptOutcome.SUPERSEDED,
            "superseded",
            ctx.now,
        )
    change_status(ctx.session, holder, S.LOGGED_OUT, "superseded", now=ctx.now)
    data = {"reason": "superseded", "by_account_id": ctx.account.id}
    record(ctx.session, holder, EventType.SESSION_LOGGED_OUT, data, now=ctx.now)
    # The old row must stop holding the phone before the new one takes it.
    await ctx.session.flush()
    holder_id = holder.id
    ctx.then_engine(lambda: ctx.engine.logout(holder_id))
    ctx.then_forget_codes(holder_id)
    ctx.then_delete_credentials(holder_id)


async def on_connected(ctx: Ctx, event: Connected) -> None:
    account, attempt = ctx.account, ctx.attempt
    account.last_seen_at = ctx.now
    if ctx.status not in (S.PAIRING, S.RECONNECTING):
        if ctx.status is not S.CONNECTED:
            # Connected while stopped, logged out or failed: the engine is ahead of us.
            ctx.then_engine(lambda: ctx.engine.disconnect(account.id))
        return
    if attempt is not None:
        attempt.connected_at = ctx.now
        account.linked_at = ctx.now
        end_attempt(ctx.session, account, attempt, AttemptOutcome.LINKED, None, ctx.now)
    change_status(ctx.session, account, S.CONNECTED, now=ctx.now)
    record(ctx.session, account, EventType.SESSION_CONNECTED, {"phone": account.phone}, now=ctx.now)

    async def note() -> None:
        if attempt is not None:
            log.info(
                WagateMessage.ATTEMPT_ENDED,
                extra={"account_id": account.id, "attempt_id": attempt.id, "outcome": "linked"},
            )
        log.info(WagateMessage.SESSION_CONNECTED, extra={"account_id": account.id})

    ctx.after.append(note)


async def on_disconnected(ctx: Ctx, event: Disconnected) -> None:
    status = ctx.status
    if status in (S.LINKING, S.PAIRING) and not event.will_retry:
        end(ctx, AttemptOutcome.FAILED, event.reason)
        return
    if status in (S.CONNECTED, S.PAIRING) and event.will_retry:
        target = S.RECONNECTING
    elif status in (S.CONNECTED, S.RECONNECTING) and not event.will_retry:
        target = S.STOPPED
    else:
        return
    change_status(ctx.session, ctx.account, target, event.reason, now=ctx.now)
    data = {"reason": event.reason, "will_retry": event.will_retry}
    record(ctx.session, ctx.account, EventType.SESSION_DISCONNECTED, data, now=ctx.now)


async def on_logged_out(ctx: Ctx, event: LoggedOut) -> None:
    status = ctx.status
    if status is S.LINKING:
        end(ctx, AttemptOutcome.FAILED, event.reason)
        return
    if status in (S.UNLINKED, S.LOGGED_OUT):
        return
    if ctx.attempt is not None:
        end(ctx, AttemptOutcome.FAILED, event.reason, status=S.LOGGED_OUT)
    else:
        change_status(ctx.session, ctx.account, S.LOGGED_OUT, event.reason, now=ctx.now)
    record(
        ctx.session,
        ctx.account,
        EventType.SESSION_LOGGED_OUT,
        {"reason": event.reason},
        now=ctx.now,
    )
    ctx.then_delete_credentials(ctx.account.id)


def fail(ctx: Ctx, reason: str) -> None:
    """Events that need an operator: banned, outdated, replaced."""
    if ctx.status in (S.UNLINKED, S.LOGGED_OUT, S.FAILED):
        return
    if ctx.attempt is not None:
        end(ctx, AttemptOutcome.FAILED, reason, status=S.FAILED)
    else:
        change_status(ctx.session, ctx.account, S.FAILED, reason, now=ctx.now)
    data = {"reason": reason, "will_retry": False}
    record(ctx.session, ctx.account, EventType.SESSION_DISCONNECTED, data, now=ctx.now)


async def on_replaced(ctx: Ctx, event: Replaced) -> None:
    fail(ctx, "stream_replaced")


async def on_banned(ctx: Ctx, event: Banned) -> None:
    fail(ctx, "banned")


async def on_outdated(ctx: Ctx, event: Outdated) -> None:
    fail(ctx, "client_outdated")


async def on_connect_failed(ctx: Ctx, event: ConnectFailed) -> None:
    status = ctx.status
    if status in (S.LINKING, S.PAIRING):
        end(ctx, AttemptOutcome.FAILED, event.reason)
    elif status is S.CONNECTED and event.retryable:
        change_status(ctx.session, ctx.account, S.RECONNECTING, event.reason, now=ctx.now)
    elif status in (S.CONNECTED, S.RECONNECTING, S.STOPPED) and not event.retryable:
        fail(ctx, event.reason)


async def on_message_status(ctx: Ctx, event: MessageStatus) -> None:
    await messages.apply_receipt(ctx.session, ctx.account, event.wa_id, event.status)


async def on_message_received(ctx: Ctx, event: MessageReceived) -> None:
    await messages.store_incoming(
        ctx.session,
        ctx.account,
        wa_id=event.wa_id,
        chat=event.chat,
        sender=event.sender,
        text=event.text,
        timestamp=event.timestamp,
        now=ctx.now,
        known=ctx.incoming,
    )
