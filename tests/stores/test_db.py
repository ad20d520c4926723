"""The db store on every backend: the account it belongs to, and its version counter."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.stores.support import BLOB, KEY, make_account
from wagate.core.crypto import Cipher
from wagate.db.database import Database
from wagate.db.models import Account, AuthState
from wagate.errors import NotFound
from wagate.stores.db import DbAuthStore


async def _row(db: Database, account_id: str) -> AuthState | None:
    async with db.sessions() as session:
        return await session.get(AuthState, account_id)


async def test_save_for_unknown_account_is_not_found(database: Database) -> None:
    store = DbAuthStore(database, Cipher(KEY))
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(NotFound) as info:
        await store.save(missing, BLOB)
    assert info.value.fields == {"account_id": missing}
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AuthState)) == 0


async def test_version_counts_saves(database: Database) -> None:
    store, account = DbAuthStore(database, Cipher(KEY)), await make_account(database)
    for _ in range(3):
        await store.save(account, BLOB)
    row = await _row(database, account)
    assert row is not None and row.version == 3


async def test_concurrent_saves_for_one_account_count_every_save(database: Database) -> None:
    store, account = DbAuthStore(database, Cipher(KEY)), await make_account(database)
    blobs = [f"generation {i}".encode() for i in range(20)]
    await asyncio.gather(*(store.save(account, blob) for blob in blobs))
    row = await _row(database, account)
    assert row is not None and row.version == 20
    assert await store.load(account) in blobs


async def test_deleting_the_account_deletes_its_credentials(database: Database) -> None:
    store, account = DbAuthStore(database, Cipher(KEY)), await make_account(database)
    await store.save(account, BLOB)

    async def remove(session: AsyncSession) -> None:
        await session.execute(delete(Account).where(Account.id == account))

    await database.run(remove)
    assert await store.load(account) is None
    with pytest.raises(NotFound):
        await store.save(account, BLOB)
