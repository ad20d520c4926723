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
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.backoff import Backoff
from wagate.core.caller import Caller
from wagate.core.cluster import DEFAULT_TERMS, SESSION_STATUSES, LeaseTerms
from wagate.core.rates import Rate
from wagate.core.states import AccountStatus, AttemptOutcome
from wagate.core.tasks import BackgroundTasks
from wagate.db import notes
from wagate.db.database import UNREACHABLE as DATABASE_UNREACHABLE
from wagate.db.database import Database, db_clock
from wagate.db.models import Account, utcnow
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
    Conflict,
    EngineUnavailable,
    NotFound,
    StoreUnavailable,
    WagateError,
)
from wagate.logs import WagateMessage
from wagate.metrics import Metrics, run_counted
from wagate.services import cluster
from wagate.services.accounts import get_account, lock_account
from wagate.services.linking import abandon_link, open_attempt_of
from wagate.services.messages import incoming_stored
from wagate.sessions import handlers
from wagate.sessions.context import Ctx, Effect, Live, Runtime, claim_lease
from wagate.stores.base import AuthStore

log = logging.getLogger("wagate.sessions")

T = TypeVar("T")
S = AccountStatus
ENGINE_CALL_TIMEOUT = 15.0
# Leases a transaction took (account id → epoch) or let go (→ None).
Leases = dict[str, int | None]


@dataclass(frozen=True, slots=True)
class Fenced:
    """A transaction refused: this node no longer holds the account's lease (``status``: the
    account's, None when it was deleted)."""

    status: str | None


# What a transaction on one account gives back: act's result, the effects to run after the
# commit, and whether it was refused for want of the lease.
Transacted = tuple[T | None, list[Effect], Fenced | None]
# What applies one engine event to an account, inside the transaction.
Handler = Callable[[Ctx, Any], Awaitable[None]]
MESSAGE_EVENTS = (MessageReceived, MessageStatus)
# The most message events of one account applied in one transaction.
MESSAGE_BATCH = 64
# Failures that pass: no pooled connection free in time, a lost connection, a store away.
UNREACHABLE: tuple[type[Exception], ...] = (*DATABASE_UNREACHABLE, StoreUnavailable)
# An engine event the database could not take is tried again this often, until it can.
HELD_RETRY = Backoff(min=0.2, max=5.0, factor=2.0, jitter=0.1)
# Events held per account while the database is out of reach; past this the newest are dropped
# (and logged), so a long outage cannot take the process's memory.
HELD_EVENTS = 10_000
# How long a handoff waits for what the engine reported before the session closed to be applied.
HANDOFF_DRAIN = 5.0


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
        node: str = "local",
        terms: LeaseTerms = DEFAULT_TERMS,
    ) -> None:
        self.db = db
        # (per account, per workspace); None: link attempts are not limited.
        self.link_rates = link_rates
        self.metrics = metrics
        self.runtime = Runtime(engine, auth, call_timeout, node=node, terms=terms)
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
        # Sessions being closed for a handoff: their own Disconnected is not a status change.
        self._handing_off: set[str] = set()
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

    @property
    def node(self) -> str:
        return self.runtime.node

    @property
    def held(self) -> dict[str, int]:
        """The leases this node holds: account id → epoch."""
        return self.runtime.held

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

    async def interrupt_open_attempts(self, reason: str = "restart") -> int:
        """Close the attempts no live node runs any more (left by a process that stopped, or by
        a node that went silent past its lease); a live node's attempts stay open."""

        async def work(session: AsyncSession) -> list[str]:
            now = await db_clock(session)
            ids = await cluster.unserved(
                session, self.node, now, self.runtime.terms, (S.LINKING, S.PAIRING)
            )
            closed = []
            for account_id in ids:
                account = await lock_account(session, account_id)
                attempt = await open_attempt_of(session, account_id)
                if account is None or attempt is None:
                    continue
                abandon_link(
                    session, account, attempt, AttemptOutcome.INTERRUPTED, reason, utcnow()
                )
                closed.append(attempt.id)
            return closed

        closed = await self.run(work)
        for attempt_id in closed:
            log.info(
                WagateMessage.ATTEMPT_ENDED,
                extra={"attempt_id": attempt_id, "outcome": "interrupted", "reason": reason},
            )
        return len(closed)

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]], **kwargs: Any) -> T:
        """``db.run`` for the session layer: before the commit, the accounts the work moved in or
        out of the session statuses take or let go their leases; after it, those leases are (no
        longer) this node's, and the metrics count the link events it committed. Callers hold
        the locks of the accounts the work changes."""

        async def owned(session: AsyncSession) -> tuple[T, Leases]:
            result = await work(session)
            return result, await self._settle_leases(session)

        result, leases = await run_counted(self.db, self.metrics, owned, **kwargs)
        self._adopt_leases(leases)
        return result

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
            if len(queue) >= HELD_EVENTS:
                log.error(
                    "engine event dropped: too many held for the account",
                    extra={"account_id": account_id, "event": type(event).__name__},
                )
                return
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
        """Apply one event. While the database (or the credential store) is out of reach it is
        tried again, with backoff, for as long as it takes: the account's later events wait
        behind it, in order (at most ``HELD_EVENTS`` of them), rather than being dropped."""
        attempt = 0
        while True:
            try:
                await self.apply(account_id, event)
                return
            except UNREACHABLE as exc:
                if self._closed:
                    failure: BaseException = exc
                    break
                attempt += 1
                if attempt == 1 or attempt % 20 == 0:
                    log.warning(
                        "database out of reach, engine event held until it is back",
                        extra={
                            "account_id": account_id,
                            "event": type(event).__name__,
                            "error": type(exc).__name__,
                        },
                    )
                await asyncio.sleep(HELD_RETRY.delay(attempt))
            except Exception as exc:
                failure = exc
                break
        log.error(
            "engine event not applied",
            exc_info=failure,
            extra={"account_id": account_id, "event": type(event).__name__},
        )

    async def settle(self) -> None:
        """Wait until every queued engine event has been applied (tests, shutdown)."""
        await _until(lambda: not self._pending)

    async def apply(self, account_id: str, event: EngineEvent) -> None:
        """Apply one engine event to the account in one transaction, then its side effects."""
        if self.metrics is not None:
            self.metrics.engine_event(type(event).__name__)
        if isinstance(event, CredentialsUpdated):
            if account_id not in self.held:
                # A session this node no longer serves must not overwrite its new owner's.
                log.info(
                    "credentials of a session not served here dropped",
                    extra={"account_id": account_id},
                )
                return
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
        if isinstance(event, Disconnected) and account_id in self._handing_off:
            return  # closed for a handoff: the account stays connected on its next node

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
        fence: bool | None = None,
    ) -> T | None:
        """Run ``act`` on the locked account and its open attempt in one transaction, under the
        account's lock; then run the effects it queued. Without ``caller`` (engine events,
        upkeep) a missing account is skipped; with one, it is ``NotFound`` for that caller.
        ``attempt=False`` leaves ``ctx.attempt`` None, for work that never needs it.

        ``fence`` (the default without a caller): the work is this node's own on a session it
        serves, so it runs only while this node holds the account's lease at the epoch it took;
        otherwise nothing is written and the session is closed here (DESIGN §13)."""
        fence = caller is None if fence is None else fence
        async with self._lock(account_id):

            async def work(session: AsyncSession) -> Transacted[T]:
                if caller is None:
                    account = await lock_account(session, account_id)
                    if account is None:
                        return None, [], Fenced(None) if fence else None
                else:
                    account = await get_account(session, caller, account_id, lock=True)
                if fence and not await cluster.holds(
                    session, account_id, self.node, self.held.get(account_id)
                ):
                    return None, [], Fenced(account.status)
                open_one = await open_attempt_of(session, account_id) if attempt else None
                ctx = Ctx(session, account, open_one, utcnow(), self.runtime)
                return await self._act(ctx, act), ctx.after, None

            result, effects, fenced = await self.run(work, retry_integrity=True)
            if fenced is not None:
                effects = self._let_go(account_id, fenced.status)
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
                await cluster.load_leases(session, ids)
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

    async def _settle_leases(self, session: AsyncSession) -> Leases:
        """Before the commit: an account the transaction moved out of the session statuses lets
        its lease go, whoever held it (a stop through another node reaches the owner this way);
        one moved into them is served here, so this node takes its lease, or the transaction
        fails when another node serves it."""
        tx = notes.of(session)
        for account_id, status in tx.statuses.items():
            if AccountStatus(status) not in SESSION_STATUSES:
                await cluster.release(session, account_id)
                tx.leases[account_id] = None
            elif (
                account_id not in self.held
                and not tx.leases.get(account_id)
                and await claim_lease(session, account_id, self.runtime) is None
            ):
                raise Conflict(
                    "another gateway node serves this account; retry in a moment",
                    account_id=account_id,
                )
        return dict(tx.leases)

    def _adopt_leases(self, leases: Leases) -> None:
        """After a commit: the leases its transaction took or let go are (no longer) this
        node's. Called with the accounts' locks held, before any engine call of theirs."""
        for account_id, epoch in leases.items():
            if epoch is None:
                self.held.pop(account_id, None)
            else:
                self.held[account_id] = epoch

    async def recheck(self, account_id: str) -> None:
        """Check under the account's lock that this node still holds its lease; if not, the
        session is closed here (a fenced transaction that changes nothing)."""

        async def nothing(ctx: Ctx) -> None:
            return None

        await self.transact(account_id, nothing, attempt=False)

    async def give_back(self, account_id: str) -> None:
        """The database says this node holds the account's lease but nothing here serves it (a
        node restarted under the same name): release it, so the account is placed again."""
        async with self._lock(account_id):
            if account_id not in self.held:
                await self.db.run(lambda s: cluster.release(s, account_id, self.node))

    async def hand_off(self, account_id: str) -> bool:
        """Close this node's session of a connected account and release its lease, so the node
        placement gives it reopens it: its status stays ``connected``, its credentials are
        kept, and it is closed here before any other node may take it. What the engine reported
        before the session closed (messages, receipts) is applied first, under this node's
        lease: nothing it received is dropped on the way to the next node."""
        async with self._lock(account_id):
            epoch = self.held.get(account_id)
            if epoch is None:
                return False

            async def serving(session: AsyncSession) -> bool:
                account = await session.get(Account, account_id)
                connected = account is not None and account.status == S.CONNECTED
                return connected and await cluster.holds(session, account_id, self.node, epoch)

            if not await self.db.run(serving):
                return False
            self._handing_off.add(account_id)
            try:
                await self.call(self.engine.disconnect(account_id))
            except WagateError:
                # Maybe still connected: keep serving it rather than risk two connections.
                log.warning("session not closed for a handoff", extra={"account_id": account_id})
                self._handing_off.discard(account_id)
                return False
        try:
            await asyncio.wait_for(_until(lambda: account_id not in self._pending), HANDOFF_DRAIN)
        except TimeoutError:
            log.warning(
                "engine events of a handoff left unapplied", extra={"account_id": account_id}
            )
        async with self._lock(account_id):
            self._handing_off.discard(account_id)
            if self.held.get(account_id) != epoch:
                return False  # fenced meanwhile: the lease is no longer this node's to release
            del self.held[account_id]
            await self.db.run(lambda s: cluster.release(s, account_id, self.node))
            return True

    def moving(self, account_id: str) -> bool:
        """Whether this node is handing the account's session to another node right now."""
        return account_id in self._handing_off

    async def moved(self, account_id: str, timeout: float = HANDOFF_DRAIN) -> None:
        """Until this node's handoff of the account is over (``timeout`` at most)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_until(lambda: not self.moving(account_id)), timeout)

    def let_go_all(self) -> int:
        """Close every session here without the database (self-fencing); how many."""
        ids = list(self.held)
        for account_id in ids:
            effects = self._let_go(account_id, AccountStatus.STOPPED.value)
            self._tasks.spawn(_run_effects(effects, account_id), name=f"fence:{account_id}")
        return len(ids)

    def _let_go(self, account_id: str, status: str | None) -> list[Effect]:
        """This node no longer serves the account: forget it, and close what the engine still
        runs for it; a device whose account was unlinked or deleted meanwhile is logged out."""
        if self.held.pop(account_id, None) is not None:
            log.warning("lease lost, session closed here", extra={"account_id": account_id})
            if self.metrics is not None:
                self.metrics.lease_lost.inc()
        else:
            log.debug(
                "engine event for a session not served here", extra={"account_id": account_id}
            )
        self.live_codes.pop(account_id, None)
        engine = self.engine
        gone = status is None or AccountStatus(status) in (S.UNLINKED, S.LOGGED_OUT)

        async def close() -> None:
            await self.call(engine.cancel_link(account_id))
            if gone:
                await self.call(engine.logout(account_id))
            else:
                await self.call(engine.disconnect(account_id))

        return [close]


async def _until(done: Callable[[], bool]) -> None:
    """Until ``done()`` holds, looked at every few milliseconds."""
    while not done():
        await asyncio.sleep(0.005)


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
