"""Restoration at start: every linked account reopened by id, concurrently and bounded."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from wagate.config import Settings
from wagate.db.models import Account, Workspace
from wagate.engines.sim import SimEngine, SimServer
from wagate.gateway import Gateway

COUNT = 500
BOUND = 16


class CountingSim(SimEngine):
    """The simulator, with each connect taking a little while and the overlap counted."""

    def __init__(self) -> None:
        super().__init__(SimServer(0.01))
        self.in_flight = 0
        self.most = 0
        self.connected: list[str] = []

    async def connect(self, account_id: str, credentials: bytes) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.3)  # a connect that takes a while, so overlap shows
            self.connected.append(account_id)
            await super().connect(account_id, credentials)
        finally:
            self.in_flight -= 1


async def seed(settings: Settings, count: int = COUNT) -> list[str]:
    gateway = Gateway(settings)
    await gateway.open()
    try:

        async def work(session):  # type: ignore[no-untyped-def]
            workspace = Workspace(name="w", webhook_secret="x")
            session.add(workspace)
            await session.flush()
            accounts = [
                Account(
                    workspace_id=workspace.id,
                    label=f"a{n}",
                    status="connected",
                    phone=f"55118{n:08d}",
                    jid=f"55118{n:08d}:1@s.whatsapp.net",
                )
                for n in range(count)
            ]
            session.add_all(accounts)
            await session.flush()
            return [a.id for a in accounts]

        ids: list[str] = await gateway.db.run(work)
        assert gateway.auth is not None
        for account_id, n in zip(ids, range(count), strict=True):
            blob = json.dumps({"phone": f"55118{n:08d}"}).encode()
            await gateway.auth.save(account_id, blob)
        return ids
    finally:
        await gateway.close()


@pytest.mark.timeout(120)
async def test_restore_500_accounts_concurrent_and_bounded(  # type: ignore[no-untyped-def]
    fresh_database_url, tmp_path: Path, caplog
) -> None:
    settings = Settings(
        database_url=await fresh_database_url("sqlite"),
        engine="sim",
        data_dir=tmp_path,
        admin_key="admin-key-for-restore-tests-0123456789",
        restore_concurrency=BOUND,
    )
    ids = await seed(settings)
    engine = CountingSim()
    gateway = Gateway(settings, engine=engine)
    caplog.set_level(logging.INFO, logger="wagate.restore")
    await gateway.open()
    try:
        assert gateway.sessions is not None
        await asyncio.wait_for(gateway.restored.wait(), 60)
        await gateway.sessions.settle()
        assert sorted(engine.connected) == sorted(ids)  # each by its own id, once
        # Concurrent (many at once), and never past the bound.
        assert BOUND // 2 <= engine.most <= BOUND
        async with gateway.db.sessions() as session:
            counts = dict(
                (
                    await session.execute(
                        select(Account.status, func.count()).group_by(Account.status)
                    )
                ).all()
            )
        assert counts == {"connected": COUNT}
        [summary] = [r for r in caplog.records if r.getMessage() == "restore finished"]
        assert summary.restored == COUNT and summary.failed == {}  # type: ignore[attr-defined]
        assert summary.seconds > 0  # type: ignore[attr-defined]
    finally:
        await gateway.close()


async def test_store_outage_at_restore_parks_accounts_without_logging_out(  # type: ignore[no-untyped-def]
    fresh_database_url, tmp_path: Path
) -> None:
    from wagate.errors import StoreUnavailable

    settings = Settings(
        database_url=await fresh_database_url("sqlite"),
        engine="sim",
        data_dir=tmp_path,
        admin_key="admin-key-for-restore-tests-0123456789",
    )
    ids = await seed(settings, count=1)
    gateway = Gateway(settings)
    await gateway.open()
    try:
        assert gateway.sessions is not None and gateway.auth is not None
        await asyncio.wait_for(gateway.restored.wait(), 60)

        async def unavailable(account_id: str) -> bytes | None:
            raise StoreUnavailable("down")

        gateway.auth.load = unavailable  # type: ignore[method-assign]
        from wagate.sessions import commands

        assert await commands.reopen(gateway.sessions, ids[0]) == "store_unavailable"
        async with gateway.db.sessions() as session:
            account = await session.get(Account, ids[0])
            assert account is not None
            assert (account.status, account.status_reason) == ("stopped", "store_unavailable")
    finally:
        await gateway.close()


async def test_restore_in_batches_counts_accounts_no_longer_linked(  # type: ignore[no-untyped-def]
    fresh_database_url, tmp_path: Path
) -> None:
    """Accounts are marked ``reconnecting`` a batch per transaction; an account stopped or
    deleted since its id was read is counted, not reopened, and the others still are."""
    from sqlalchemy import delete, update

    from wagate.db.models import Event
    from wagate.sessions import restore

    settings = Settings(
        database_url=await fresh_database_url("sqlite"),
        engine="sim",
        data_dir=tmp_path,
        admin_key="admin-key-for-restore-tests-0123456789",
    )
    ids = await seed(settings, count=restore.RESTORE_BATCH + 6)  # two batches
    gateway = Gateway(settings)
    await gateway.open()
    try:
        assert gateway.sessions is not None
        await asyncio.wait_for(gateway.restored.wait(), 60)
        await gateway.sessions.settle()
        stopped, gone = ids[:2] + ids[-1:], ids[5]

        async def change(session):  # type: ignore[no-untyped-def]
            await session.execute(
                update(Account).where(Account.id.in_(stopped)).values(status="stopped")
            )
            await session.execute(delete(Account).where(Account.id == gone))

        await gateway.db.run(change)
        async with gateway.db.sessions() as session:
            before = await session.scalar(select(func.max(Event.id)))

        report = await restore.restore(gateway.sessions, ids, concurrency=8)
        await gateway.sessions.settle()

        assert report.restored == len(ids) - 4
        assert report.failed == {"not_linked": 4}
        async with gateway.db.sessions() as session:
            counts = dict(
                (
                    await session.execute(
                        select(Account.status, func.count()).group_by(Account.status)
                    )
                ).all()
            )
            assert counts == {"connected": len(ids) - 4, "stopped": 3}
            changes = (
                await session.execute(
                    select(Event.account_id, Event.data)
                    .where(Event.id > before, Event.type == "account.status")
                    .order_by(Event.id)
                )
            ).all()
        restored = set(ids) - set(stopped) - {gone}
        # Each restored account went connected → reconnecting ("restoring") → connected.
        marks = [a for a, data in changes if data["status"] == "reconnecting"]
        assert sorted(marks) == sorted(restored)
        assert {a for a, data in changes if data["status"] == "connected"} == restored
        assert all(
            data["reason"] == "restoring" for _, data in changes if data["status"] == "reconnecting"
        )
    finally:
        await gateway.close()
