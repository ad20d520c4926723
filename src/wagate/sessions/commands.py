"""Account commands beyond linking: log out, stop, start, delete, and reopening from credentials.

Each runs through ``SessionManager.transact``: one transaction under the account's lock, with
engine calls and credential deletion queued until after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

from wagate.core.caller import Caller
from wagate.core.event_types import EventType
from wagate.core.states import LINKED_STATUSES, AccountStatus, AttemptOutcome
from wagate.db.models import Account
from wagate.db.outbox import record
from wagate.errors import Conflict, CredentialsCorrupt, StoreUnavailable, WagateError
from wagate.services.accounts import change_status
from wagate.services.linking import end_attempt
from wagate.sessions.context import Ctx
from wagate.sessions.handlers import end
from wagate.sessions.manager import SessionManager

log = logging.getLogger("wagate.sessions")
S = AccountStatus


async def logout(mgr: SessionManager, caller: Caller, account_id: str) -> Account:
    """Unlink: revoke the credentials with the server and delete them here."""

    async def act(ctx: Ctx) -> Account:
        status = ctx.status
        if status is S.LINKING:
            end(ctx, AttemptOutcome.CANCELLED, "logout")
            ctx.then_engine(lambda: ctx.engine.cancel_link(account_id))
            return ctx.account
        if status not in LINKED_STATUSES and status is not S.FAILED:
            raise Conflict(f"account is {status.value}: there is nothing to log out")
        if ctx.attempt is not None:
            end_attempt(
                ctx.session, ctx.account, ctx.attempt, AttemptOutcome.CANCELLED, "logout", ctx.now
            )
        change_status(ctx.session, ctx.account, S.LOGGED_OUT, "logout", now=ctx.now)
        record(
            ctx.session,
            ctx.account,
            EventType.SESSION_LOGGED_OUT,
            {"reason": "logout"},
            now=ctx.now,
        )
        ctx.then_engine(lambda: ctx.engine.logout(account_id))
        ctx.then_delete_credentials(account_id)
        return ctx.account

    return await _run(mgr, caller, account_id, act)


async def stop(mgr: SessionManager, caller: Caller, account_id: str) -> Account:
    """Park the session: disconnect, keep the credentials. Stopping a stopped account is a no-op."""

    async def act(ctx: Ctx) -> Account:
        status = ctx.status
        if status is S.STOPPED:
            return ctx.account
        if status not in (S.CONNECTED, S.RECONNECTING):
            raise Conflict(f"account is {status.value}: only a running session can be stopped")
        change_status(ctx.session, ctx.account, S.STOPPED, "stopped", now=ctx.now)
        data = {"reason": "stopped", "will_retry": False}
        record(ctx.session, ctx.account, EventType.SESSION_DISCONNECTED, data, now=ctx.now)
        ctx.then_engine(lambda: ctx.engine.disconnect(account_id))
        return ctx.account

    return await _run(mgr, caller, account_id, act)


async def start(mgr: SessionManager, caller: Caller, account_id: str) -> Account:
    """Resume a stopped session from its credentials. Starting a running one is a no-op."""

    async def act(ctx: Ctx) -> Account:
        status = ctx.status
        if status in (S.CONNECTED, S.RECONNECTING):
            return ctx.account
        if status is not S.STOPPED:
            raise Conflict(f"account is {status.value}: only a stopped session can be started")
        change_status(ctx.session, ctx.account, S.RECONNECTING, "starting", now=ctx.now)

        async def connect() -> None:
            await reconnect(mgr, account_id)

        ctx.after.append(connect)
        return ctx.account

    return await _run(mgr, caller, account_id, act)


async def delete(mgr: SessionManager, caller: Caller, account_id: str) -> None:
    """Log out if linked, delete the credentials from whichever store holds them, remove."""

    async def act(ctx: Ctx) -> None:
        status = ctx.status
        if status is S.LINKING:
            ctx.then_engine(lambda: ctx.engine.cancel_link(account_id))
        elif status in LINKED_STATUSES or status is S.FAILED:
            ctx.then_engine(lambda: ctx.engine.logout(account_id))
        ctx.then_delete_credentials(account_id)
        await ctx.session.delete(ctx.account)

    await mgr.transact(account_id, act, caller=caller)
    log.info("account deleted", extra={"account_id": account_id})


async def _run(
    mgr: SessionManager,
    caller: Caller,
    account_id: str,
    act: Callable[[Ctx], Awaitable[Account]],
) -> Account:
    mgr.check_accepting()
    account = await mgr.transact(account_id, act, caller=caller)
    assert account is not None  # with a caller, a missing account raised NotFound
    return account


async def reopen(mgr: SessionManager, account_id: str) -> str | None:
    """Restoration of one account: mark it reconnecting, connect from its credentials.

    Returns None when the engine took the session, else the reason it could not.
    """

    if not await mgr.transact(account_id, reopening("restoring"), fence=False):
        return "not_linked"
    return await reconnect(mgr, account_id)


async def mark_reopening(
    mgr: SessionManager, account_ids: Collection[str], reason: str = "restoring"
) -> set[str]:
    """The first half of ``reopen`` for a batch of accounts, in one transaction: those this node
    now serves, marked (or already) ``reconnecting`` with ``reason``, ready for ``reconnect``; the
    others are no longer linked, or another node serves them."""
    marked = await mgr.transact_each(account_ids, reopening(reason))
    return {account_id for account_id, ready in marked.items() if ready}


def reopening(reason: str) -> Callable[[Ctx], Awaitable[bool]]:
    """Take the account's lease for this node and mark it ``reconnecting`` with ``reason``;
    whether it is ready to be reopened from its credentials here."""

    async def act(ctx: Ctx) -> bool:
        if ctx.status not in (S.CONNECTED, S.RECONNECTING) or not await ctx.claim():
            return False
        if ctx.status is S.CONNECTED:
            change_status(ctx.session, ctx.account, S.RECONNECTING, reason, now=ctx.now)
        return True

    return act


async def reconnect(mgr: SessionManager, account_id: str) -> str | None:
    """Hand the account's stored credentials to the engine; an account whose credentials are
    missing or damaged is logged out at once, never left waiting."""
    try:
        blob = await mgr.auth.load(account_id) if mgr.auth is not None else None
    except CredentialsCorrupt:
        await credentials_lost(mgr, account_id, "credentials_corrupt")
        return "credentials_corrupt"
    except StoreUnavailable:
        # The credentials may be fine: park the account for a later start, never log it out.
        await _park(mgr, account_id, "store_unavailable")
        return "store_unavailable"
    if blob is None:
        await credentials_lost(mgr, account_id, "credentials_missing")
        return "credentials_missing"
    try:
        await mgr.call(mgr.engine.connect(account_id, blob))
    except WagateError:
        log.warning("engine could not reopen a session", extra={"account_id": account_id})
        await _engine_failed(mgr, account_id)
        return "engine_error"
    return None


async def credentials_lost(mgr: SessionManager, account_id: str, reason: str) -> None:
    async def act(ctx: Ctx) -> None:
        if ctx.status in (S.PAIRING, S.CONNECTED, S.RECONNECTING, S.STOPPED):
            change_status(ctx.session, ctx.account, S.LOGGED_OUT, reason, now=ctx.now)
            record(
                ctx.session,
                ctx.account,
                EventType.SESSION_LOGGED_OUT,
                {"reason": reason},
                now=ctx.now,
            )
        ctx.then_delete_credentials(account_id)

    await mgr.transact(account_id, act)
    log.warning("credentials unusable", extra={"account_id": account_id, "reason": reason})


async def _engine_failed(mgr: SessionManager, account_id: str) -> None:
    async def act(ctx: Ctx) -> None:
        if ctx.status in (S.PAIRING, S.CONNECTED, S.RECONNECTING):
            change_status(ctx.session, ctx.account, S.FAILED, "engine_error", now=ctx.now)

    await mgr.transact(account_id, act)


async def _park(mgr: SessionManager, account_id: str, reason: str) -> None:
    async def act(ctx: Ctx) -> None:
        if ctx.status in (S.CONNECTED, S.RECONNECTING):
            change_status(ctx.session, ctx.account, S.STOPPED, reason, now=ctx.now)

    await mgr.transact(account_id, act)
    log.warning("credential store unavailable", extra={"account_id": account_id})
