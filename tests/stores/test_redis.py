"""The redis store: one hash per account, configuration errors, an unreachable server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from tests.stores.support import BLOB, KEY
from wagate.core.crypto import Cipher, checksum
from wagate.errors import ConfigError, CredentialsCorrupt, StoreUnavailable
from wagate.stores.redis import RedisAuthStore


@pytest.fixture
async def prefixed(redis_url: str) -> AsyncIterator[tuple[RedisAuthStore, aioredis.Redis]]:
    """A store under a prefix of its own and a raw client; the prefix's keys go afterwards."""
    prefix = f"wagate:test:{uuid.uuid4().hex}:"
    store = RedisAuthStore(redis_url, Cipher(KEY), prefix=prefix)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        yield store, raw
    finally:
        await store.close()
        keys = [key async for key in raw.scan_iter(f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


async def test_one_hash_of_checksum_and_ciphertext(
    prefixed: tuple[RedisAuthStore, aioredis.Redis],
) -> None:
    store, raw = prefixed
    account = str(uuid.uuid4())
    await store.save(account, BLOB)
    found = await raw.hgetall(store.key(account))  # type: ignore[misc]
    assert set(found) == {b"checksum", b"ciphertext"}
    assert found[b"checksum"].decode() == checksum(found[b"ciphertext"])


@pytest.mark.parametrize(
    "fields",
    [{"checksum": "0" * 64}, {"ciphertext": b"x"}, {"checksum": b"\xff\xfe", "ciphertext": b"x"}],
)
async def test_incomplete_or_garbled_hash_is_corrupt(
    prefixed: tuple[RedisAuthStore, aioredis.Redis], fields: dict[str, str | bytes]
) -> None:
    store, raw = prefixed
    account = str(uuid.uuid4())
    await raw.hset(store.key(account), mapping=fields)  # type: ignore[misc, arg-type]
    with pytest.raises(CredentialsCorrupt):
        await store.load(account)


@pytest.mark.parametrize("url", ["", "http://127.0.0.1:6379/0", "redis://127.0.0.1:port/0"])
def test_unusable_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        RedisAuthStore(url, Cipher(KEY))


async def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisAuthStore(f"redis://127.0.0.1:{port}/0", Cipher(KEY), timeout=1.0)
    account = str(uuid.uuid4())
    try:
        with pytest.raises(StoreUnavailable):
            await store.save(account, BLOB)
        with pytest.raises(StoreUnavailable):
            await store.load(account)
        with pytest.raises(StoreUnavailable):
            await store.delete(account)
    finally:
        await store.close()
