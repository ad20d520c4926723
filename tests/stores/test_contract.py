"""One contract for every credential store: db (three backends), file, redis."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.crypto import Cipher
from wagate.db import Database
from wagate.errors import CredentialsCorrupt
from wagate.models import Account, AuthState, Workspace
from wagate.stores.base import AuthStore
from wagate.stores.db import DbAuthStore
from wagate.stores.file import FileAuthStore
from wagate.stores.redis import RedisAuthStore

KEY = os.urandom(32)
BLOB = b'{"phone": "5511999990000", "secret": "noise-key-material"}'


@dataclass
class Harness:
    store: AuthStore
    new_account: Callable[[], Awaitable[str]]
    # Damages the stored bytes of one account at rest: "flip", "truncate", "checksum".
    damage: Callable[[str, str], Awaitable[None]]
    # Moves account a's stored bytes onto account b, as a careless copy would.
    transplant: Callable[[str, str], Awaitable[None]]
    reopen: Callable[[Cipher], AuthStore]


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


async def _db_harness(db: Database) -> Harness:
    async def new_account() -> str:
        async def work(session: AsyncSession) -> str:
            workspace = Workspace(name="w", webhook_secret="x")
            session.add(workspace)
            await session.flush()
            account = Account(workspace_id=workspace.id, label="a")
            session.add(account)
            await session.flush()
            return account.id

        return await db.run(work)

    async def read(account_id: str) -> AuthState:
        async with db.sessions() as session:
            row = await session.get(AuthState, account_id)
            assert row is not None
            return row

    async def write(account_id: str, **values: object) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(AuthState).where(AuthState.account_id == account_id).values(**values)
            )

        await db.run(work)

    async def damage(account_id: str, how: str) -> None:
        row = await read(account_id)
        if how == "flip":
            await write(account_id, ciphertext=_flip(row.ciphertext))
        elif how == "truncate":
            await write(account_id, ciphertext=row.ciphertext[:10])
        else:
            await write(account_id, checksum="0" * 64)

    async def transplant(source: str, target: str) -> None:
        row = await read(source)
        await write(target, ciphertext=row.ciphertext, checksum=row.checksum)

    return Harness(
        DbAuthStore(db, Cipher(KEY)),
        new_account,
        damage,
        transplant,
        lambda cipher: DbAuthStore(db, cipher),
    )


def _file_harness(directory: Path) -> Harness:
    store = FileAuthStore(directory, Cipher(KEY))

    async def new_account() -> str:
        return str(uuid.uuid4())

    async def damage(account_id: str, how: str) -> None:
        path = store.path(account_id)
        raw = path.read_bytes()
        header, _, body = raw.partition(b"\n")
        if how == "flip":
            path.write_bytes(header + b"\n" + _flip(body))
        elif how == "truncate":
            path.write_bytes(raw[: len(header) + 10])
        else:
            path.write_bytes(b'{"v": 1, "checksum": "' + b"0" * 64 + b'"}\n' + body)

    async def transplant(source: str, target: str) -> None:
        store.path(target).write_bytes(store.path(source).read_bytes())

    return Harness(
        store, new_account, damage, transplant, lambda cipher: FileAuthStore(directory, cipher)
    )


def _redis_harness(url: str) -> Harness:
    prefix = f"wagate:test:{uuid.uuid4().hex}:"
    store = RedisAuthStore(url, Cipher(KEY), prefix=prefix)

    async def new_account() -> str:
        return str(uuid.uuid4())

    async def damage(account_id: str, how: str) -> None:
        key = store.key(account_id)
        ciphertext = await store.client.hget(key, "ciphertext")  # type: ignore[misc]
        if how == "flip":
            await store.client.hset(key, "ciphertext", _flip(ciphertext))  # type: ignore[misc]
        elif how == "truncate":
            await store.client.hset(key, "ciphertext", ciphertext[:10])  # type: ignore[misc]
        else:
            await store.client.hset(key, "checksum", "0" * 64)  # type: ignore[misc]

    async def transplant(source: str, target: str) -> None:
        found = await store.client.hgetall(store.key(source))  # type: ignore[misc]
        await store.client.hset(store.key(target), mapping=found)  # type: ignore[misc]

    return Harness(
        store,
        new_account,
        damage,
        transplant,
        lambda cipher: RedisAuthStore(url, cipher, prefix=prefix),
    )


@pytest.fixture(params=["db-sqlite", "db-postgres", "db-mysql", "file", "redis"])
async def harness(request, fresh_database_url, tmp_path) -> AsyncIterator[Harness]:  # type: ignore[no-untyped-def]
    kind = request.param
    db: Database | None = None
    if kind.startswith("db-"):
        db = Database(await fresh_database_url(kind.removeprefix("db-")))
        await db.upgrade()
        made = await _db_harness(db)
    elif kind == "file":
        made = _file_harness(tmp_path / "auth")
    else:
        from tests.conftest import service_url

        made = _redis_harness(service_url("redis"))
    yield made
    if isinstance(made.store, RedisAuthStore):
        keys = [k async for k in made.store.client.scan_iter(f"{made.store.prefix}*")]
        if keys:
            await made.store.client.delete(*keys)
    await made.store.close()
    await made.store.close()  # idempotent
    if db is not None:
        await db.close()


async def test_round_trip_overwrite_delete(harness: Harness) -> None:
    store, account = harness.store, await harness.new_account()
    assert await store.load(account) is None
    await store.save(account, BLOB)
    assert await store.load(account) == BLOB
    await store.save(account, BLOB + b"2")
    assert await store.load(account) == BLOB + b"2"
    await store.delete(account)
    assert await store.load(account) is None
    await store.delete(account)


@pytest.mark.parametrize("how", ["flip", "truncate", "checksum"])
async def test_damage_at_rest_is_detected(harness: Harness, how: str) -> None:
    store, account, other = harness.store, await harness.new_account(), await harness.new_account()
    await store.save(account, BLOB)
    await store.save(other, BLOB)
    await harness.damage(account, how)
    with pytest.raises(CredentialsCorrupt):
        await store.load(account)
    assert await store.load(other) == BLOB


async def test_blob_copied_onto_another_account_does_not_open(harness: Harness) -> None:
    store, a, b = harness.store, await harness.new_account(), await harness.new_account()
    await store.save(a, BLOB)
    await store.save(b, b"b's own")
    await harness.transplant(a, b)
    with pytest.raises(CredentialsCorrupt):
        await store.load(b)


async def test_wrong_key_does_not_open(harness: Harness) -> None:
    account = await harness.new_account()
    await harness.store.save(account, BLOB)
    other = harness.reopen(Cipher(os.urandom(32)))
    try:
        with pytest.raises(CredentialsCorrupt):
            await other.load(account)
    finally:
        await other.close()


async def test_concurrent_saves(harness: Harness) -> None:
    accounts = [await harness.new_account() for _ in range(50)]
    await asyncio.gather(*(harness.store.save(a, a.encode()) for a in accounts))
    assert [await harness.store.load(a) for a in accounts] == [a.encode() for a in accounts]


async def test_no_secret_in_logs(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = await harness.new_account()
    await harness.store.save(account, BLOB)
    await harness.damage(account, "flip")
    with pytest.raises(CredentialsCorrupt) as info:
        await harness.store.load(account)
    text = caplog.text + str(info.value)
    assert b"noise-key-material".decode() not in text and KEY.hex() not in text


async def test_file_store_is_private_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = FileAuthStore(tmp_path / "auth", Cipher(KEY))
    account = str(uuid.uuid4())
    await store.save(account, BLOB)
    await store.save(account, BLOB)
    assert [p.name for p in (tmp_path / "auth").iterdir()] == [f"{account}.cred"]
    assert store.path(account).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "auth").stat().st_mode & 0o777 == 0o700
    with pytest.raises(Exception, match="UUID"):
        store.path("../../etc/passwd")
