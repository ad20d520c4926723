"""SQLite connections that run each statement at once on the event loop's own thread.

SQLAlchemy's aiosqlite dialect hands every statement to a worker thread and resumes the
transaction when the event loop next gets round to it. SQLite has one writer at a time, so a
write transaction of ten statements held the write lock for ten turns of a busy loop: under load
that is ten or more milliseconds per transaction for a millisecond of work, and every other
writer queued behind it. Reads paid too: each hand-back waits for the thread to get the GIL from
a busy loop, and with a dozen reader threads that made the slowest reads of a loaded gateway
some hundred milliseconds (measured in docs/benchmarks.md). SQLite in WAL mode with
``synchronous=NORMAL`` commits without waiting for the disk and answers an indexed read in
microseconds: running statements in place is cheaper than the hand-over. (Turning rows into
objects, the larger part of a big read, ran on the loop's thread before as well.)

These connections never wait for a lock another process holds (``busy_timeout`` is 0): such a
statement fails at once with "database is locked", and ``Database.run`` tries the transaction
again after an async sleep, so the loop never blocks on another process.

The objects below speak the part of aiosqlite's interface that SQLAlchemy's adapter uses; they
are handed to ``create_async_engine(..., async_creator=...)``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from sqlalchemy.engine import URL

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


class Cursor:
    """An aiosqlite-shaped cursor whose coroutines finish without suspending."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[Any]:
        for row in self._cursor:
            yield row

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class Connection:
    """An aiosqlite-shaped connection over a plain ``sqlite3`` one, used on the loop's thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        # SQLAlchemy's adapter reads this to tell an open connection from a closed one.
        self._connection: sqlite3.Connection | None = connection

    @property
    def _live(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._live.isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self._live.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        self._live.commit()

    async def rollback(self) -> None:
        self._live.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._live.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def creator(url: URL) -> Any:
    """The ``async_creator`` for a file database at ``url``: connections in autocommit mode
    (the writer's ``begin`` listener issues ``BEGIN IMMEDIATE``) that never wait for a lock."""
    path = url.database or ""

    uri = str(url.query.get("uri", "")).lower() in ("true", "1")

    async def connect() -> Connection:
        raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False, uri=uri)
        # Switching a new file to WAL may wait for another process; later it never does.
        raw.execute("PRAGMA busy_timeout=30000")
        for pragma in PRAGMAS:
            raw.execute(pragma)
        raw.execute("PRAGMA busy_timeout=0")
        return Connection(raw)

    return connect
