"""The database: async engine, transactions with retry on lock conflicts, and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncmy.errors
import asyncpg.exceptions
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from wagate.core.backoff import Backoff
from wagate.db import notes, sqlite
from wagate.db.models import Event
from wagate.db.notes import Notes

log = logging.getLogger("wagate.db")

# What "the database is out of reach" raises: no pooled connection in time, a lost connection
# (wrapped by SQLAlchemy), and a connect refused or cut, which every driver raises as its own
# error outside SQLAlchemy's (the socket's OSError; PostgreSQL starting up, shutting down or out
# of connections; MariaDB's "can't connect"). Callers answer 503, or wait and try again.
UNREACHABLE: tuple[type[Exception], ...] = (
    SQLAlchemyTimeoutError,
    SQLAlchemyOperationalError,
    InterfaceError,
    DisconnectionError,
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InterfaceError,
    asyncmy.errors.OperationalError,
    asyncmy.errors.InterfaceError,
)


def touch(session: AsyncSession, topic: str, event: Event | None = None) -> None:
    """Note that this transaction concerns ``topic`` (and recorded ``event``): its commit wakes
    that topic's readers and hands them the event."""
    tx = notes.of(session)
    tx.topics.add(topic)
    if event is not None:
        tx.events.append(event)


def recorded(session: AsyncSession) -> list[Event]:
    """The events recorded in this session's transaction so far, in order."""
    return notes.of(session).events


# The database's own clock, in UTC, per backend (leases and heartbeats compare by it, so nodes on
# several machines agree on what has expired whatever their own clocks say).
_CLOCK = {
    "postgresql": "SELECT clock_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
}


async def db_clock(session: AsyncSession) -> datetime:
    """The database's time, aware UTC: read once per transaction of ``Database.run`` (the
    transaction's time, as every lease it takes or renews expires from it)."""
    tx = notes.of(session)
    if tx.clock is None:
        tx.clock = await _read_clock(session)
    return tx.clock


async def _read_clock(session: AsyncSession) -> datetime:
    backend = session.get_bind().dialect.name
    value = (await session.execute(text(_CLOCK.get(backend, _CLOCK["mysql"])))).scalar_one()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Commit:
    """What one committed transaction wrote: the topics it touched, its events (flushed, so
    with their ids), and all it noted (the deliveries it claimed at birth, ...)."""

    topics: Collection[str]
    events: Sequence[Event]
    notes: Notes


T = TypeVar("T")

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}

# Execution option of a connection of the writer that only reads: no write lock taken.
_READING = "wagate_reading"
_LOCKED = "database is locked"  # SQLite: another connection holds the write lock
# Lock conflicts worth running the whole transaction again for.
_RETRYABLE_MARKERS = (
    "deadlock",  # PostgreSQL 40P01, MySQL 1213
    "could not serialize",  # PostgreSQL 40001
    "lock wait timeout",  # MySQL 1205
    _LOCKED,
)
# How long a transaction waits for another process's SQLite write lock, trying again meanwhile.
LOCK_WAIT = 30.0
# SQLite read connections kept open (as many again may open for a moment under load).
READERS = 32
CONFLICT_BACKOFF = Backoff(min=0.005, max=0.2, factor=2.0, jitter=0.5)


def async_url(url: str) -> str:
    """The same database URL with wagate's async driver (``sqlite:///x.db`` → aiosqlite, ...)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise ValueError(f"unsupported database {backend!r}: use sqlite, postgresql or mysql")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a transient lock conflict rather than a real error."""
    text = str(exc).lower()
    return isinstance(exc, DBAPIError) and any(marker in text for marker in _RETRYABLE_MARKERS)


def _lock_held(exc: BaseException, deadline: float) -> bool:
    """Whether ``exc`` is SQLite's write lock held by another connection, before ``deadline``:
    worth waiting for and trying again."""
    return _LOCKED in str(exc).lower() and time.monotonic() < deadline


def _sqlite_writer(engine: AsyncEngine) -> None:
    # Every writing SQLite transaction takes the write lock at BEGIN: two deferred transactions
    # that both upgrade to writing would otherwise fail at once instead of waiting for the lock.
    # A connection that only reads (the ping) says so and takes no lock.
    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        reading = conn.get_execution_options().get(_READING, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


class WriteGate:
    """A lock handed over in arrival order, except that urgent waiters go first."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )

    @contextlib.asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        if self._held:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[0 if urgent else 1].append(turn)
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled():
                    self._release()  # handed over just as we were cancelled: pass it on
                else:
                    with contextlib.suppress(ValueError):  # already passed over
                        self._waiting[0 if urgent else 1].remove(turn)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # still held: ownership passes to that waiter
                    return
        self._held = False


class Database:
    """One async engine and its sessions; ``close()`` is idempotent."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        on_commit: Callable[[Commit], None] | None = None,
    ) -> None:
        self.url = async_url(url)
        # Called after every committed ``run`` with what it wrote (wakes the SSE streams of those
        # accounts and hands them the events; hands the dispatcher the deliveries).
        self._listeners: list[Callable[[Commit], None]] = [on_commit] if on_commit else []
        # Set while a dispatcher in this process claims new deliveries at birth (db.outbox).
        self._birth_lease: float | None = None
        self.backend = make_url(self.url).get_backend_name()
        # Parameters hold QR codes, keys' hashes and ciphertexts: never in a log or error text.
        kwargs: dict[str, Any] = {
            "echo": echo,
            "pool_pre_ping": self.backend != "sqlite",
            "hide_parameters": True,
        }
        if self.backend == "mysql":
            kwargs["isolation_level"] = "READ COMMITTED"
        if self.backend != "sqlite":
            kwargs.update(pool_size=10, max_overflow=20)
        if self.backend == "sqlite":
            # Statements run in place on the loop's thread (see wagate.db.sqlite). Reads use their
            # own connections, which take no write lock (WAL lets them run beside a writer).
            creator = sqlite.creator(make_url(self.url))
            self.engine = create_async_engine(self.url, async_creator=creator, **kwargs)
            _sqlite_writer(self.engine)
            # Every request holds a read session while it runs: past the pool's size each would
            # open (and close) a connection of its own, pragmas and all.
            self.reader = create_async_engine(
                self.url, async_creator=creator, pool_size=READERS, max_overflow=READERS, **kwargs
            )
        else:
            self.engine = create_async_engine(self.url, **kwargs)
            self.reader = self.engine
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time: queueing writers here is much cheaper than letting
        # them poll the file lock in SQLite's busy handler (which sleeps up to 100 ms a try).
        self._write_gate: WriteGate | None = WriteGate() if self.backend == "sqlite" else None
        # For reading only: nothing written through these is ever committed.
        self.read_sessions = async_sessionmaker(self.reader, expire_on_commit=False)
        self._closed = False

    async def run(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        retry_integrity: bool = False,
        attempts: int = 8,
        urgent: bool = False,
    ) -> T:
        """Run ``work`` in one transaction, committed on success; rerun it on lock conflicts.

        ``retry_integrity`` also reruns it after a unique-key race, for work that reads what the
        winner wrote and decides again (two accounts linking the same phone at once).
        ``urgent`` work goes before the other writers waiting for SQLite's single write lock:
        short transactions others wait on (settling webhook deliveries).
        """
        deadline = time.monotonic() + LOCK_WAIT
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._writing(urgent), self.sessions() as session, session.begin():
                    tx = notes.start(session, self._birth_lease)
                    result = await work(session)
            except DBAPIError as exc:
                race = retry_integrity and isinstance(exc, IntegrityError)
                if not (race or is_retryable(exc)):
                    raise
                # Another process holding SQLite's write lock is waited for as long as SQLite's
                # own busy timeout would have; other conflicts get ``attempts`` tries.
                if attempt >= attempts and not _lock_held(exc, deadline):
                    raise
                log.debug("transaction conflict, retrying", extra={"attempt": attempt})
                await asyncio.sleep(CONFLICT_BACKOFF.delay(attempt))
                continue
            if self._listeners:
                commit = Commit(tx.topics, tx.events, tx)
                for listener in list(self._listeners):
                    listener(commit)
            return result

    def claim_at_birth(self, lease: float | None) -> None:
        """Have new deliveries claimed at birth with a lease of ``lease`` seconds, handed to the
        commit listeners (a dispatcher in this process); None stops it."""
        self._birth_lease = lease

    def listen(self, listener: Callable[[Commit], None]) -> None:
        """Call ``listener`` after every committed ``run``."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[Commit], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _writing(self, urgent: bool) -> contextlib.AbstractAsyncContextManager[object]:
        if self._write_gate is None:
            return contextlib.nullcontext()
        return self._write_gate.hold(urgent)

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                reading = await conn.execution_options(**{_READING: True})
                await reading.exec_driver_sql("SELECT 1")
        except Exception:  # any failure means "not reachable"; the reason is logged
            log.warning("database ping failed", exc_info=True)
            return False
        return True

    async def upgrade(self) -> None:
        """Apply every migration up to head (waiting, like ``run``, for another process that
        holds SQLite's write lock)."""
        deadline = time.monotonic() + LOCK_WAIT
        for attempt in itertools.count(1):
            try:
                async with self.engine.begin() as conn:
                    await conn.run_sync(_upgrade_sync)
                return
            except DBAPIError as exc:
                if not _lock_held(exc, deadline):
                    raise
                await asyncio.sleep(CONFLICT_BACKOFF.delay(attempt))

    async def current_revision(self) -> str | None:
        async with self.reader.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.engine.dispose()
            if self.reader is not self.engine:
                await self.reader.dispose()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "wagate.db:migrations")
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_sync(conn: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    with warnings.catch_warnings():
        # MySQL names every primary key PRIMARY and says so for each named one.
        warnings.filterwarnings("ignore", message=".*ignored for PRIMARY key")
        command.upgrade(cfg, "head")
