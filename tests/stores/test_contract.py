"""One contract for every credential store: db (three backends), file, redis."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import asyncio as aioredis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import BACKENDS
from tests.stores.support import BLOB, KEY, SECRET_PART, make_account
from wagate.core.crypto import Cipher, checksum
from wagate.db.database import Database
from wagate.db.models import AuthState
from wagate.errors import CredentialsCorrupt
from wagate.stores.base import AuthStore
from wagate.stores.db import DbAuthStore
from wagate.stores.file import FileAuthStore
from wagate.stores.redis import RedisAuthStore


@dataclass
class Harness:
    """A store plus raw access to what it keeps, below the store, as an operator would have."""

    store: AuthStore
    new_account: Callable[[], Awaitable[str]]
    # (ciphertext, checksum) exactly as stored for an account.
    read_raw: Callable[[str], Awaitable[tuple[bytes, str]]]
    write_raw: Callable[[str, bytes, str], Awaitable[None]]
    # The same storage opened with another cipher.
    reopen: Callable[[Cipher], AuthStore]


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


async def corrupt(harness: Harness, account_id: str, how: str) -> None:
    """Damage an account's stored bytes at rest, the ways disks, copies and hand edits do."""
    ciphertext, stored = await harness.read_raw(account_id)
    damaged = {
        "flip": (_flip(ciphertext), stored),
        "truncate": (ciphertext[:10], stored),
        "checksum": (ciphertext, "0" * 64),
        # Tampered and checksummed again: only the authenticated encryption can notice.
        "reseal": (_flip(ciphertext), checksum(_flip(ciphertext))),
        "reseal-truncate": (ciphertext[:10], checksum(ciphertext[:10])),
    }[how]
    await harness.write_raw(account_id, *damaged)


def _db_harness(db: Database) -> Harness:
    async def read_raw(account_id: str) -> tuple[bytes, str]:
        async with db.sessions() as session:
            row = (
                await session.execute(
                    select(AuthState.ciphertext, AuthState.checksum).where(
                        AuthState.account_id == account_id
                    )
                )
            ).one()
            return row.ciphertext, row.checksum

    async def write_raw(account_id: str, ciphertext: bytes, stored: str) -> None:
        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                update(AuthState)
                .where(AuthState.account_id == account_id)
                .values(ciphertext=ciphertext, checksum=stored)
            )
            return result.rowcount  # type: ignore[attr-defined, no-any-return]

        assert await db.run(work) == 1

    return Harness(
        DbAuthStore(db, Cipher(KEY)),
        lambda: make_account(db),
        read_raw,
        write_raw,
        lambda cipher: DbAuthStore(db, cipher),
    )


def _file_harness(directory: Path) -> Harness:
    store = FileAuthStore(directory, Cipher(KEY))

    async def new_account() -> str:
        return str(uuid.uuid4())

    async def read_raw(account_id: str) -> tuple[bytes, str]:
        header, _, ciphertext = store.path(account_id).read_bytes().partition(b"\n")
        return ciphertext, json.loads(header)["checksum"]  # type: ignore[no-any-return]

    async def write_raw(account_id: str, ciphertext: bytes, stored: str) -> None:
        header = json.dumps({"v": 1, "checksum": stored}).encode()
        store.path(account_id).write_bytes(header + b"\n" + ciphertext)

    return Harness(
        store, new_account, read_raw, write_raw, lambda cipher: FileAuthStore(directory, cipher)
    )


def _redis_harness(url: str, prefix: str, raw: aioredis.Redis) -> Harness:
    async def new_account() -> str:
        return str(uuid.uuid4())

    async def read_raw(account_id: str) -> tuple[bytes, str]:
        found = await raw.hgetall(f"{prefix}{account_id}")  # type: ignore[misc]
        return found[b"ciphertext"], found[b"checksum"].decode()

    async def write_raw(account_id: str, ciphertext: bytes, stored: str) -> None:
        mapping = {"ciphertext": ciphertext, "checksum": stored}
        await raw.hset(f"{prefix}{account_id}", mapping=mapping)  # type: ignore[misc, arg-type]

    return Harness(
        RedisAuthStore(url, Cipher(KEY), prefix=prefix),
        new_account,
        read_raw,
        write_raw,
        lambda cipher: RedisAuthStore(url, cipher, prefix=prefix),
    )


@pytest.fixture(params=[*(f"db-{backend}" for backend in BACKENDS), "file", "redis"])
async def harness(
    request: pytest.FixtureRequest,
    fresh_database_url: Callable[[str], Awaitable[str]],
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    kind: str = request.param
    if kind.startswith("db-"):
        db = Database(await fresh_database_url(kind.removeprefix("db-")))
        await db.upgrade()
        made = _db_harness(db)
        yield made
        await made.store.close()
        await db.close()
    elif kind == "file":
        made = _file_harness(tmp_path / "auth")
        yield made
        await made.store.close()
    else:
        url: str = request.getfixturevalue("redis_url")
        prefix = f"wagate:test:{uuid.uuid4().hex}:"
        raw = aioredis.Redis.from_url(url)
        made = _redis_harness(url, prefix, raw)
        try:
            yield made
        finally:
            await made.store.close()
            keys = [key async for key in raw.scan_iter(f"{prefix}*")]
            if keys:
                await raw.delete(*keys)
            await raw.aclose()


async def test_round_trip(harness: Harness) -> None:
    account = await harness.new_account()
    await harness.store.save(account, BLOB)
    assert await harness.store.load(account) == BLOB


async def test_load_of_unknown_account_is_none(harness: Harness) -> None:
    assert await harness.store.load(await harness.new_account()) is None


async def test_overwrite_keeps_only_the_newest(harness: Harness) -> None:
    account = await harness.new_account()
    await harness.store.save(account, BLOB)
    await harness.store.save(account, b"newer")
    assert await harness.store.load(account) == b"newer"


async def test_delete_and_delete_of_nothing(harness: Harness) -> None:
    store, account, other = harness.store, await harness.new_account(), await harness.new_account()
    await store.save(account, BLOB)
    await store.save(other, b"other")
    await store.delete(account)
    assert await store.load(account) is None
    assert await store.load(other) == b"other"
    await store.delete(account)
    await store.delete(await harness.new_account())


async def test_stored_bytes_are_ciphertext_with_its_checksum(harness: Harness) -> None:
    account = await harness.new_account()
    await harness.store.save(account, BLOB)
    ciphertext, stored = await harness.read_raw(account)
    assert SECRET_PART.encode() not in ciphertext
    assert stored == checksum(ciphertext)


@pytest.mark.parametrize("how", ["flip", "truncate", "checksum", "reseal", "reseal-truncate"])
async def test_damage_at_rest_is_detected(harness: Harness, how: str) -> None:
    store, account, other = harness.store, await harness.new_account(), await harness.new_account()
    await store.save(account, BLOB)
    await store.save(other, BLOB)
    await corrupt(harness, account, how)
    with pytest.raises(CredentialsCorrupt):
        await store.load(account)
    assert await store.load(other) == BLOB
    # Saving again repairs the account: damage never sticks to it.
    await store.save(account, BLOB)
    assert await store.load(account) == BLOB


async def test_blob_copied_onto_another_account_does_not_open(harness: Harness) -> None:
    store, a, b = harness.store, await harness.new_account(), await harness.new_account()
    await store.save(a, BLOB)
    await store.save(b, b"b's own")
    await harness.write_raw(b, *await harness.read_raw(a))
    with pytest.raises(CredentialsCorrupt):
        await store.load(b)
    assert await store.load(a) == BLOB


async def test_wrong_key_does_not_open(harness: Harness) -> None:
    account = await harness.new_account()
    await harness.store.save(account, BLOB)
    other = harness.reopen(Cipher(os.urandom(32)))
    try:
        with pytest.raises(CredentialsCorrupt):
            await other.load(account)
    finally:
        await other.close()
    same = harness.reopen(Cipher(KEY))
    try:
        assert await same.load(account) == BLOB
    finally:
        await same.close()


async def test_concurrent_saves_for_many_accounts(harness: Harness) -> None:
    accounts = [await harness.new_account() for _ in range(50)]
    await asyncio.gather(*(harness.store.save(a, a.encode()) for a in accounts))
    loaded = await asyncio.gather(*(harness.store.load(a) for a in accounts))
    assert loaded == [a.encode() for a in accounts]


async def test_concurrent_saves_for_one_account_leave_one_whole_blob(harness: Harness) -> None:
    account = await harness.new_account()
    blobs = [f"generation {i}".encode() for i in range(20)]
    await asyncio.gather(*(harness.store.save(account, blob) for blob in blobs))
    assert await harness.store.load(account) in blobs


async def test_close_twice(harness: Harness) -> None:
    await harness.store.close()
    await harness.store.close()


def _secrets() -> list[str]:
    return [
        SECRET_PART,
        BLOB.decode(),
        repr(BLOB),
        KEY.hex(),
        repr(KEY),
        base64.b64encode(KEY).decode(),
        base64.urlsafe_b64encode(KEY).decode(),
    ]


async def test_no_secret_in_logs_or_errors(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Libraries that quiet themselves by default (SQLAlchemy, aiosqlite) are opened up too.
    for name in (None, "sqlalchemy", "aiosqlite"):
        caplog.set_level(logging.DEBUG, logger=name)
    account = await harness.new_account()
    await harness.store.save(account, BLOB)
    await harness.store.save(account, BLOB)
    assert await harness.store.load(account) == BLOB
    errors: list[BaseException] = []
    for how in ("flip", "reseal"):
        await corrupt(harness, account, how)
        with pytest.raises(CredentialsCorrupt) as info:
            await harness.store.load(account)
        errors.append(info.value)
        await harness.store.save(account, BLOB)
    other = harness.reopen(Cipher(os.urandom(32)))
    with pytest.raises(CredentialsCorrupt) as info:
        await other.load(account)
    errors.append(info.value)
    await other.close()
    await harness.store.delete(account)

    seen = caplog.text + "".join(repr(record.__dict__) for record in caplog.records)
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            seen += repr(chain) + str(chain) + repr(vars(chain))
            chain = chain.__cause__ or chain.__context__
    for secret in _secrets():
        assert secret not in seen
