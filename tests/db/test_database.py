"""The database layer: migrations, the SQLite write gate and its lock handling."""

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.db import database as db_module
from wagate.db.database import Database, WriteGate, head_revision
from wagate.db.models import Workspace


async def test_upgrade_reaches_head(database: Database) -> None:
    assert await database.current_revision() == head_revision()


async def test_write_gate_serves_urgent_waiters_first_and_survives_cancellation() -> None:
    gate = WriteGate()
    order: list[str] = []
    entered = asyncio.Event()

    async def writer(name: str, urgent: bool = False, hold: float = 0.0) -> None:
        async with gate.hold(urgent):
            order.append(name)
            entered.set()
            await asyncio.sleep(hold)

    first = asyncio.create_task(writer("first", hold=0.05))
    await entered.wait()
    waiting = [
        asyncio.create_task(writer("plain-1")),
        asyncio.create_task(writer("plain-2")),
        asyncio.create_task(writer("urgent", urgent=True)),
    ]
    cancelled = asyncio.create_task(writer("cancelled"))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.gather(first, *waiting)
    assert order == ["first", "urgent", "plain-1", "plain-2"]
    async with gate.hold():  # free again: nobody holds it after the cancelled waiter left
        pass


async def test_sqlite_writes_wait_for_another_processs_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """Writes run on the loop's thread (wagate.sqlite); a write lock held elsewhere makes a
    transaction wait and try again, while the loop goes on serving everything else."""
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}")
    await db.upgrade()
    other = sqlite3.connect(path, isolation_level=None)  # as another process would
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def write(session: AsyncSession) -> None:
        session.add(Workspace(name="waited", webhook_secret="x"))

    beating = asyncio.create_task(ticker())
    writing = asyncio.create_task(db.run(write))
    await asyncio.sleep(0.5)
    assert not writing.done()
    assert ticks >= 20, "the event loop was blocked while the lock was held"
    other.execute("COMMIT")
    await asyncio.wait_for(writing, 5)
    beating.cancel()
    async with db.read_sessions() as session:
        assert (await session.execute(select(Workspace.name))).scalars().all() == ["waited"]
    other.close()
    await db.close()


async def test_sqlite_gives_up_on_a_lock_held_past_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "LOCK_WAIT", 0.3)
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}")
    await db.upgrade()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def write(session: AsyncSession) -> None:
        session.add(Workspace(name="never", webhook_secret="x"))

    with pytest.raises(OperationalError, match="database is locked"):
        await asyncio.wait_for(db.run(write), 5)
    other.execute("ROLLBACK")
    other.close()
    await db.close()
