"""The SessionManager: owns live sessions and applies engine events, in order, per account.

Engine callbacks never touch the database: they are queued per account and applied one at a
time, each in one transaction together with the events it causes. Commands (link, cancel, ...)
take the same per-account lock, so a command and an engine event never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.accounts import Caller, change_status, get_account, lock_account
from wagate.db import Database
from wagate.engines.base import (
    Banned,
    Connected,
    ConnectFailed,
    CredentialsUpdated,
    Disconnected,
    Engine,
    EngineEvent,
    LinkExpired,
    LoggedOut,
    Outdated,
    PairCode,
    Paired,
    PairFailed,
    QrCode,
    Replaced,
)
from wagate.errors import EngineTimeout, EngineUnavailable, NoOpenAttempt, WagateError
from wagate.linking import abandon_link, end_attempt, open_attempt, open_attempt_of, phone_holder
from wagate.models import Account, LinkAttempt, Workspace, utcnow
from wagate.outbox import EventType, record
from wagate.states import AccountStatus, AttemptOutcome, LinkMethod
from wagate.stores.base import AuthStore
from wagate.tasks import BackgroundTasks

log = logging.getLogger("wagate.sessions")

T = TypeVar("T")
S = AccountStatus
ENGINE_CALL_TIMEOUT = 15.0
Effect = Callable[[], Awaitable[None]]


@dataclass
class Live:
    """What only the running process knows about an account's open attempt: the current code."""

    attempt_id: str
    qr: QrCode | None = None
    pair_code: PairCode | None = None


@dataclass
class _Ctx:
    session: AsyncSession
    account: Account
    attempt: LinkAttempt | None
    now: datetime
    after: list[Effect] = field(default_factory=list)

    @property
    def status(self) -> AccountStatus:
        return AccountStatus(self.account.status)


class SessionManager:
    """Applies engine events through the state machine and runs account commands."""

    def __init__(self, db: Database, engine: Engine, auth: AuthStore | None = None) -> None:
        self.db = db
        self.engine = engine
        self.auth = auth
        self._live: dict[str, Live] = {}
        self._pending: dict[str, deque[EngineEvent]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks = BackgroundTasks("sessions")
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.engine.start(self._on_engine_event)
        await self.interrupt_open_attempts()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.engine.close()
        await self._tasks.close()

    async def interrupt_open_attempts(self) -> int:
        """Close attempts left open by a previous process: nothing is running them any more."""

        async def work(session: AsyncSession) -> list[str]:
            query = select(LinkAttempt).where(LinkAttempt.ended_at.is_(None))
            closed = []
            for attempt in (await session.execute(query)).scalars():
                account = await lock_account(session, attempt.account_id)
                if account is None:
                    continue
                now = utcnow()
                abandon_link(session, account, attempt, AttemptOutcome.INTERRUPTED, "restart", now)
                closed.append(attempt.id)
            return closed

        closed = await self.db.run(work)
        for attempt_id in closed:
            log.info(
                "link attempt ended",
                extra={"attempt_id": attempt_id, "outcome": "interrupted", "reason": "restart"},
            )
        return len(closed)

    def live(self, account_id: str) -> Live | None:
        return self._live.get(account_id)

    def _lock(self, account_id: str) -> asyncio.Lock:
        lock = self._locks.get(account_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[account_id] = lock
        return lock

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """An engine call under wagate's own timeout."""
        try:
            return await asyncio.wait_for(coro, ENGINE_CALL_TIMEOUT)
        except TimeoutError as exc:
            raise EngineTimeout("the engine did not answer in time") from exc

    # -- commands -------------------------------------------------------------------------------

    async def link(
        self, caller: Caller, account_id: str, method: LinkMethod, phone: str | None
    ) -> LinkAttempt:
        """Open a link attempt, or return the one already open (single-flight)."""
        async with self._lock(account_id):
            now = utcnow()

            async def work(session: AsyncSession) -> tuple[LinkAttempt, bool]:
                account = await get_account(session, caller, account_id, lock=True)
                return await open_attempt(session, account, method, phone, now)

            attempt, created = await self.db.run(work, retry_integrity=True)
            if not created:
                return attempt
            self._live[account_id] = Live(attempt_id=attempt.id)
            log.info(
                "link attempt started",
                extra={"account_id": account_id, "attempt_id": attempt.id, "method": method.value},
            )
            try:
                await self._call(self.engine.link(account_id, method, phone))
            except Exception as exc:
                await self._end_after_engine_error(account_id, attempt.id)
                raise EngineUnavailable("the engine could not start the link") from exc
            return attempt

    async def _end_after_engine_error(self, account_id: str, attempt_id: str) -> None:
        log.error("engine refused a link", extra={"account_id": account_id})

        async def work(session: AsyncSession) -> None:
            account = await lock_account(session, account_id)
            attempt = await open_attempt_of(session, account_id)
            if account is not None and attempt is not None and attempt.id == attempt_id:
                abandon_link(
                    session, account, attempt, AttemptOutcome.FAILED, "engine_error", utcnow()
                )

        await self.db.run(work)
        self._live.pop(account_id, None)

    async def cancel_link(self, caller: Caller, account_id: str) -> LinkAttempt:
        """Cancel the open attempt; the engine stops showing codes for it."""
        async with self._lock(account_id):

            async def work(session: AsyncSession) -> tuple[LinkAttempt, AccountStatus]:
                account = await get_account(session, caller, account_id, lock=True)
                attempt = await open_attempt_of(session, account_id)
                if attempt is None:
                    raise NoOpenAttempt("the account has no open link attempt")
                was = AccountStatus(account.status)
                abandon_link(
                    session, account, attempt, AttemptOutcome.CANCELLED, "cancelled", utcnow()
                )
                return attempt, was

            attempt, was = await self.db.run(work)
            self._live.pop(account_id, None)
            log.info(
                "link attempt ended",
                extra={"account_id": account_id, "attempt_id": attempt.id, "outcome": "cancelled"},
            )
            if was is S.LINKING:
                await self._call(self.engine.cancel_link(account_id))
            else:
                await self._call(self.engine.logout(account_id))
            return attempt

    # -- engine events --------------------------------------------------------------------------

    def _on_engine_event(self, account_id: str, event: EngineEvent) -> None:
        """The engine's sink: never blocks; events are applied in order per account."""
        if self._closed:
            return
        queue = self._pending.get(account_id)
        if queue is not None:
            queue.append(event)
            return
        self._pending[account_id] = deque([event])
        self._tasks.spawn(self._drain(account_id), name=f"apply:{account_id}")

    async def _drain(self, account_id: str) -> None:
        queue = self._pending[account_id]
        try:
            while queue:
                event = queue[0]
                try:
                    await self.apply(account_id, event)
                except Exception:
                    log.exception(
                        "engine event not applied",
                        extra={"account_id": account_id, "event": type(event).__name__},
                    )
                queue.popleft()
        finally:
            del self._pending[account_id]

    async def settle(self) -> None:
        """Wait until every queued engine event has been applied (tests, shutdown)."""
        while self._pending:
            await asyncio.sleep(0.005)

    async def apply(self, account_id: str, event: EngineEvent) -> None:
        """Apply one engine event to the account in one transaction, then its side effects."""
        if isinstance(event, CredentialsUpdated):
            if self.auth is not None:
                await self.auth.save(account_id, event.blob)
            return
        handler = self._handlers.get(type(event))
        if handler is None:
            log.debug("engine event ignored", extra={"event": type(event).__name__})
            return
        async with self._lock(account_id):

            async def work(session: AsyncSession) -> list[Effect]:
                account = await lock_account(session, account_id)
                if account is None:
                    return []
                attempt = await open_attempt_of(session, account_id)
                ctx = _Ctx(session, account, attempt, utcnow())
                await handler(self, ctx, event)
                if AccountStatus(account.status) is not S.LINKING:
                    ctx.after.append(self._forget_codes(account_id))
                return ctx.after

            effects = await self.db.run(work, retry_integrity=True)
        for effect in effects:
            try:
                await effect()
            except WagateError:
                log.warning("side effect failed", exc_info=True, extra={"account_id": account_id})

    def _forget_codes(self, account_id: str) -> Effect:
        async def forget() -> None:
            self._live.pop(account_id, None)

        return forget

    def _engine_effect(self, coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> Effect:
        async def effect() -> None:
            await self._call(coro_factory())

        return effect

    async def _on_qr(self, ctx: _Ctx, event: QrCode) -> None:
        if ctx.attempt is None or ctx.status is not S.LINKING:
            ctx.after.append(self._engine_effect(lambda: self.engine.cancel_link(ctx.account.id)))
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
        live = self._live.setdefault(ctx.account.id, Live(attempt.id))

        async def show() -> None:
            live.qr = event
            log.info(
                "qr code issued",
                extra={
                    "account_id": ctx.account.id,
                    "attempt_id": attempt.id,
                    "index": event.index,
                },
            )

        ctx.after.append(show)

    async def _on_pair_code(self, ctx: _Ctx, event: PairCode) -> None:
        if ctx.attempt is None or ctx.status is not S.LINKING:
            ctx.after.append(self._engine_effect(lambda: self.engine.cancel_link(ctx.account.id)))
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
        live = self._live.setdefault(ctx.account.id, Live(attempt.id))

        async def show() -> None:
            live.pair_code = event

        ctx.after.append(show)

    async def _on_link_expired(self, ctx: _Ctx, event: LinkExpired) -> None:
        if ctx.attempt is not None and ctx.status is S.LINKING:
            self._end(ctx, AttemptOutcome.EXPIRED, "link_expired")

    async def _on_pair_failed(self, ctx: _Ctx, event: PairFailed) -> None:
        if ctx.attempt is not None and ctx.status in (S.LINKING, S.PAIRING):
            self._end(ctx, AttemptOutcome.FAILED, event.reason)

    def _end(
        self,
        ctx: _Ctx,
        outcome: AttemptOutcome,
        reason: str,
        status: AccountStatus = S.UNLINKED,
    ) -> None:
        abandon_link(ctx.session, ctx.account, ctx.attempt, outcome, reason, ctx.now, status=status)
        if ctx.attempt is not None:
            attempt_id = ctx.attempt.id

            async def note() -> None:
                log.info(
                    "link attempt ended",
                    extra={
                        "account_id": ctx.account.id,
                        "attempt_id": attempt_id,
                        "outcome": outcome.value,
                        "reason": reason,
                    },
                )

            ctx.after.append(note)

    async def _on_paired(self, ctx: _Ctx, event: Paired) -> None:
        account, attempt = ctx.account, ctx.attempt
        if attempt is None or ctx.status is not S.LINKING:
            # A device linked for an attempt that is over: remove it again.
            ctx.after.append(self._engine_effect(lambda: self.engine.logout(account.id)))
            return
        workspace = await ctx.session.get(Workspace, account.workspace_id)
        holder = await phone_holder(ctx.session, account.workspace_id, event.phone, account.id)
        if holder is not None:
            if workspace is not None and workspace.link_policy == "reject":
                self._end(ctx, AttemptOutcome.FAILED, "phone_already_linked")
                ctx.after.append(self._engine_effect(lambda: self.engine.logout(account.id)))
                return
            await self._supersede(ctx, holder)
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
            log.info("phone paired", extra={"account_id": account.id, "attempt_id": attempt.id})

        ctx.after.append(note)

    async def _supersede(self, ctx: _Ctx, holder: Account) -> None:
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
        ctx.after.append(self._engine_effect(lambda: self.engine.logout(holder_id)))
        ctx.after.append(self._forget_codes(holder_id))
        ctx.after.append(self._delete_credentials(holder_id))

    def _delete_credentials(self, account_id: str) -> Effect:
        async def delete() -> None:
            if self.auth is not None:
                await self.auth.delete(account_id)

        return delete

    async def _on_connected(self, ctx: _Ctx, event: Connected) -> None:
        account, attempt = ctx.account, ctx.attempt
        account.last_seen_at = ctx.now
        if ctx.status not in (S.PAIRING, S.RECONNECTING):
            if ctx.status is not S.CONNECTED:
                # Connected while stopped, logged out or failed: the engine is ahead of us.
                ctx.after.append(self._engine_effect(lambda: self.engine.disconnect(account.id)))
            return
        if attempt is not None:
            attempt.connected_at = ctx.now
            account.linked_at = ctx.now
            end_attempt(ctx.session, account, attempt, AttemptOutcome.LINKED, None, ctx.now)
        change_status(ctx.session, account, S.CONNECTED, now=ctx.now)
        record(
            ctx.session, account, EventType.SESSION_CONNECTED, {"phone": account.phone}, now=ctx.now
        )

        async def note() -> None:
            if attempt is not None:
                log.info(
                    "link attempt ended",
                    extra={"account_id": account.id, "attempt_id": attempt.id, "outcome": "linked"},
                )
            log.info("session connected", extra={"account_id": account.id})

        ctx.after.append(note)

    async def _on_disconnected(self, ctx: _Ctx, event: Disconnected) -> None:
        status = ctx.status
        if status in (S.LINKING, S.PAIRING) and not event.will_retry:
            self._end(ctx, AttemptOutcome.FAILED, event.reason)
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

    async def _on_logged_out(self, ctx: _Ctx, event: LoggedOut) -> None:
        status = ctx.status
        if status is S.LINKING:
            self._end(ctx, AttemptOutcome.FAILED, event.reason)
            return
        if status in (S.UNLINKED, S.LOGGED_OUT):
            return
        if ctx.attempt is not None:
            self._end(ctx, AttemptOutcome.FAILED, event.reason, status=S.LOGGED_OUT)
        else:
            change_status(ctx.session, ctx.account, S.LOGGED_OUT, event.reason, now=ctx.now)
        record(
            ctx.session,
            ctx.account,
            EventType.SESSION_LOGGED_OUT,
            {"reason": event.reason},
            now=ctx.now,
        )
        ctx.after.append(self._delete_credentials(ctx.account.id))

    def _fail(self, ctx: _Ctx, reason: str) -> None:
        """Events that need an operator: banned, outdated, replaced."""
        if ctx.status in (S.UNLINKED, S.LOGGED_OUT, S.FAILED):
            return
        if ctx.attempt is not None:
            self._end(ctx, AttemptOutcome.FAILED, reason, status=S.FAILED)
        else:
            change_status(ctx.session, ctx.account, S.FAILED, reason, now=ctx.now)
        data = {"reason": reason, "will_retry": False}
        record(ctx.session, ctx.account, EventType.SESSION_DISCONNECTED, data, now=ctx.now)

    async def _on_replaced(self, ctx: _Ctx, event: Replaced) -> None:
        self._fail(ctx, "stream_replaced")

    async def _on_banned(self, ctx: _Ctx, event: Banned) -> None:
        self._fail(ctx, "banned")

    async def _on_outdated(self, ctx: _Ctx, event: Outdated) -> None:
        self._fail(ctx, "client_outdated")

    async def _on_connect_failed(self, ctx: _Ctx, event: ConnectFailed) -> None:
        status = ctx.status
        if status in (S.LINKING, S.PAIRING):
            self._end(ctx, AttemptOutcome.FAILED, event.reason)
        elif status is S.CONNECTED and event.retryable:
            change_status(ctx.session, ctx.account, S.RECONNECTING, event.reason, now=ctx.now)
        elif status in (S.CONNECTED, S.RECONNECTING, S.STOPPED) and not event.retryable:
            self._fail(ctx, event.reason)

    _handlers: dict[type[Any], Callable[[SessionManager, _Ctx, Any], Awaitable[None]]] = {
        QrCode: _on_qr,
        PairCode: _on_pair_code,
        LinkExpired: _on_link_expired,
        PairFailed: _on_pair_failed,
        Paired: _on_paired,
        Connected: _on_connected,
        Disconnected: _on_disconnected,
        LoggedOut: _on_logged_out,
        Replaced: _on_replaced,
        Banned: _on_banned,
        Outdated: _on_outdated,
        ConnectFailed: _on_connect_failed,
    }
