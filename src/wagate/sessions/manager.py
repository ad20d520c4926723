"""The SessionManager: owns live sessions and applies engine events, in order, per account.

Engine callbacks never touch the database: they are queued per account and applied one at a
time, each in one transaction together with the events it causes. Commands (link, cancel, ...)
take the same per-account lock, so a command and an engine event never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.core.rates import Rate
from wagate.core.states import AccountStatus, AttemptOutcome
from wagate.core.tasks import BackgroundTasks
from wagate.db.database import Database
from wagate.db.models import Account, LinkAttempt, utcnow
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
    MessageReceived,
    MessageStatus,
    Outdated,
    PairCode,
    Paired,
    PairFailed,
    QrCode,
    Reopen,
    Replaced,
)
from wagate.errors import (
    EngineUnavailable,
    NotFound,
    StoreUnavailable,
    WagateError,
)
from wagate.logs import WagateMessage
from wagate.metrics import Metrics, run_counted
from wagate.services.accounts import get_account, lock_account
from wagate.services.linking import abandon_link, open_attempt_of
from wagate.services.messages import incoming_stored
from wagate.sessions import handlers
from wagate.sessions.context import Ctx, Effect, Live, Runtime
from wagate.stores.base import AuthStore

log = logging.getLogger("wagate.sessions")

T = TypeVar("T")
S = AccountStatus
ENGINE_CALL_TIMEOUT = 15.0
# What applies one engine event to an account, inside the transaction.
Handler = Callable[[Ctx, Any], Awaitable[None]]
MESSAGE_EVENTS = (MessageReceived, MessageStatus)
# The most message events of one account applied in one transaction.
MESSAGE_BATCH = 64
# Failures that pass: no pooled connection free in time, a lost connection, a store away.
UNREACHABLE = (SQLAlchemyTimeoutError, OperationalError, InterfaceError, StoreUnavailable)
APPLY_TRIES = 8


class SessionManager:
    """Applies engine events through the state machine and runs account commands."""

    def __init__(
        self,
        db: Database,
        engine: Engine,
        auth: AuthStore | None = None,
        *,
        metrics: Metrics | None = None,
        link_rates: tuple[Rate, Rate] | None = None,
        call_timeout: float = ENGINE_CALL_TIMEOUT,
    ) -> None:
        self.db = db
        # (per account, per workspace); None: link attempts are not limited.
        self.link_rates = link_rates
        self.metrics = metrics
        self.runtime = Runtime(engine, auth, call_timeout)
        # One handler per engine event type that changes an account (a test walks them all);
        # CredentialsUpdated goes to the credential store instead, outside any transaction.
        self.handlers: dict[type[Any], Handler] = {
            QrCode: handlers.on_qr,
            PairCode: handlers.on_pair_code,
            LinkExpired: handlers.on_link_expired,
            PairFailed: handlers.on_pair_failed,
            Paired: handlers.on_paired,
            Connected: handlers.on_connected,
            Disconnected: handlers.on_disconnected,
            LoggedOut: handlers.on_logged_out,
            Replaced: handlers.on_replaced,
            Banned: handlers.on_banned,
            Outdated: handlers.on_outdated,
            ConnectFailed: handlers.on_connect_failed,
            MessageStatus: handlers.on_message_status,
            MessageReceived: handlers.on_message_received,
        }
        self._pending: dict[str, deque[EngineEvent]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks = BackgroundTasks("sessions")
        self._accepting = True
        self._closed = False

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def auth(self) -> AuthStore | None:
        return self.runtime.auth

    @property
    def live_codes(self) -> dict[str, Live]:
        return self.runtime.live_codes

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, reopen: Reopen | None = None) -> None:
        """Take engine events, then close the attempts a previous process left open.
        ``reopen``: how the engine has a session it lost reopened (restoration's own path)."""
        await self.engine.start(self._on_engine_event, reopen)
        await self.interrupt_open_attempts()

    async def close(self, drain_seconds: float = 1.0) -> None:
        """Stop taking commands, stop the engine keeping credentials, apply what it already
        reported (briefly), then stop; statuses stay as they are so the next start restores."""
        if self._closed:
            return
        self._accepting = False
        await self.engine.close()
        try:
            await asyncio.wait_for(self.settle(), drain_seconds)
        except TimeoutError:
            log.warning(
                "engine events left unapplied at shutdown", extra={"accounts": len(self._pending)}
            )
        self._closed = True
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

        closed = await self.run(work)
        for attempt_id in closed:
            log.info(
                WagateMessage.ATTEMPT_ENDED,
                extra={"attempt_id": attempt_id, "outcome": "interrupted", "reason": "restart"},
            )
        return len(closed)

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]], **kwargs: Any) -> T:
        """``db.run``; then the metrics count the link events the transaction committed."""
        return await run_counted(self.db, self.metrics, work, **kwargs)

    def live(self, account_id: str) -> Live | None:
        return self.live_codes.get(account_id)

    def lock(self, account_id: str) -> asyncio.Lock:
        """The account's lock: held by commands and while an engine event is applied."""
        return self._lock(account_id)

    def _lock(self, account_id: str) -> asyncio.Lock:
        lock = self._locks.get(account_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[account_id] = lock
        return lock

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """An engine call under wagate's own timeout."""
        return await self.runtime.call(coro)

    def check_accepting(self) -> None:
        if not self._accepting:
            raise EngineUnavailable("the gateway is shutting down")

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
                batch = _next_batch(queue)
                if len(batch) > 1:
                    try:
                        await self.apply_messages(account_id, batch)
                    except Exception:  # one bad message must not take the others with it
                        log.warning(
                            "message batch not applied, applying one by one",
                            exc_info=True,
                            extra={"account_id": account_id, "events": len(batch)},
                        )
                        for event in batch:
                            await self._apply_logged(account_id, event)
                else:
                    await self._apply_logged(account_id, batch[0])
                for _ in batch:
                    queue.popleft()
        finally:
            del self._pending[account_id]

    async def _apply_logged(self, account_id: str, event: EngineEvent) -> None:
        """Apply one event; while the database (or the credential store) is out of reach it is
        tried again, the account's later events waiting behind it, rather than dropped."""
        for attempt in range(1, APPLY_TRIES + 1):
            try:
                await self.apply(account_id, event)
                return
            except UNREACHABLE:
                if attempt == APPLY_TRIES or self._closed:
                    break
                log.warning(
                    "database out of reach, engine event applied again shortly",
                    extra={"account_id": account_id, "event": type(event).__name__},
                )
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
            except Exception:
                break
        log.exception(
            "engine event not applied",
            extra={"account_id": account_id, "event": type(event).__name__},
        )

    async def settle(self) -> None:
        """Wait until every queued engine event has been applied (tests, shutdown)."""
        while self._pending:
            await asyncio.sleep(0.005)

    async def apply(self, account_id: str, event: EngineEvent) -> None:
        """Apply one engine event to the account in one transaction, then its side effects."""
        if self.metrics is not None:
            self.metrics.engine_event(type(event).__name__)
        if isinstance(event, CredentialsUpdated):
            if self.auth is not None:
                try:
                    await self.auth.save(account_id, event.blob)
                except NotFound:  # deleted a moment ago: nothing left to keep them for
                    log.debug(
                        "credentials for a deleted account dropped",
                        extra={"account_id": account_id},
                    )
            return
        handler = self.handlers.get(type(event))
        if handler is None:
            log.debug("engine event ignored", extra={"event": type(event).__name__})
            return

        async def act(ctx: Ctx) -> None:
            await handler(ctx, event)

        # Messages and receipts never touch a link attempt: one query fewer on the busiest path.
        await self.transact(account_id, act, attempt=not isinstance(event, MESSAGE_EVENTS))

    async def apply_messages(self, account_id: str, events: list[EngineEvent]) -> None:
        """Apply consecutive message events of one account in one transaction, in order: a burst
        of messages (a busy group, a history sync) costs one commit, not one per message."""
        if self.metrics is not None:
            for event in events:
                self.metrics.engine_event(type(event).__name__)

        async def act(ctx: Ctx) -> None:
            # One lookup for the whole batch's duplicates instead of one query (and the flush of
            # everything added so far) per message.
            wa_ids = [e.wa_id[:128] for e in events if isinstance(e, MessageReceived)]
            if wa_ids:
                ctx.incoming = await incoming_stored(ctx.session, account_id, wa_ids)
            for event in events:
                await self.handlers[type(event)](ctx, event)

        await self.transact(account_id, act, attempt=False)

    async def transact(
        self,
        account_id: str,
        act: Callable[[Ctx], Awaitable[T]],
        *,
        caller: Caller | None = None,
        attempt: bool = True,
    ) -> T | None:
        """Run ``act`` on the locked account and its open attempt in one transaction, under the
        account's lock; then run the effects it queued. Without ``caller`` (engine events,
        upkeep) a missing account is skipped; with one, it is ``NotFound`` for that caller.
        ``attempt=False`` leaves ``ctx.attempt`` None, for work that never needs it."""
        async with self._lock(account_id):

            async def work(session: AsyncSession) -> tuple[T | None, list[Effect]]:
                if caller is None:
                    account = await lock_account(session, account_id)
                    if account is None:
                        return None, []
                else:
                    account = await get_account(session, caller, account_id, lock=True)
                open_one = await open_attempt_of(session, account_id) if attempt else None
                ctx = Ctx(session, account, open_one, utcnow(), self.runtime)
                return await self._act(ctx, act), ctx.after

            result, effects = await self.run(work, retry_integrity=True)
        await _run_effects(effects, account_id)
        return result

    async def transact_each(
        self, account_ids: Collection[str], act: Callable[[Ctx], Awaitable[T]]
    ) -> dict[str, T]:
        """``transact`` for several accounts in one transaction (restoration at start: one
        commit for a batch instead of one per account). The accounts' locks are taken in id
        order, ``act`` runs on each existing account (``ctx.attempt`` None), the effects after
        the commit; returns ``act``'s result by account id, without the missing accounts."""
        ids = sorted(set(account_ids))
        async with contextlib.AsyncExitStack() as held:
            for account_id in ids:
                await held.enter_async_context(self._lock(account_id))

            async def work(session: AsyncSession) -> tuple[dict[str, T], list[Effect]]:
                query = (
                    select(Account).where(Account.id.in_(ids)).order_by(Account.id)
                ).with_for_update()
                results: dict[str, T] = {}
                effects: list[Effect] = []
                now = utcnow()
                for account in (await session.execute(query)).scalars():
                    ctx = Ctx(session, account, None, now, self.runtime)
                    results[account.id] = await self._act(ctx, act)
                    effects.extend(ctx.after)
                return results, effects

            results, effects = await self.run(work, retry_integrity=True)
        await _run_effects(effects, None)
        return results

    async def _act(self, ctx: Ctx, act: Callable[[Ctx], Awaitable[T]]) -> T:
        """``act`` on a locked account; an account it left outside ``linking`` has no QR code
        to show any more (forgotten after the commit)."""
        result = await act(ctx)
        if AccountStatus(ctx.account.status) is not S.LINKING:
            ctx.then_forget_codes(ctx.account.id)
        return result


def _next_batch(queue: deque[EngineEvent]) -> list[EngineEvent]:
    """The queue's head, with the message events that follow it when it is one."""
    batch = [queue[0]]
    if isinstance(queue[0], MESSAGE_EVENTS):
        for event in itertools.islice(queue, 1, MESSAGE_BATCH):
            if not isinstance(event, MESSAGE_EVENTS):
                break
            batch.append(event)
    return batch


async def _run_effects(effects: list[Effect], account_id: str | None) -> None:
    """A committed transaction's side effects, in order; one that fails is logged, not raised
    (the commit stands)."""
    for effect in effects:
        try:
            await effect()
        except WagateError:
            log.warning("side effect failed", exc_info=True, extra={"account_id": account_id})
