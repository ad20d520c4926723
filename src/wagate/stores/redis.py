"""Credentials in Redis: one hash per account holding the checksum and the ciphertext."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from wagate.core.crypto import Cipher
from wagate.errors import ConfigError, CredentialsCorrupt, StoreUnavailable
from wagate.stores.sealed import Sealed, seal, unseal


@contextlib.contextmanager
def _answering() -> Iterator[None]:
    # redis-py's messages name host and port, never the URL's password; the cause stays chained.
    try:
        yield
    except RedisError as exc:
        raise StoreUnavailable("the redis credential store did not answer") from exc


class RedisAuthStore:
    """``<prefix><account id>`` → hash ``{checksum, ciphertext}``, written in one HSET.

    One HSET sets both fields at once, so a reader never sees a checksum of another ciphertext.
    """

    name = "redis"

    def __init__(
        self, url: str, cipher: Cipher, prefix: str = "wagate:auth:", *, timeout: float = 5.0
    ) -> None:
        self.cipher = cipher
        self.prefix = prefix
        if not url:
            raise ConfigError("the redis credential store needs WAGATE_REDIS_URL")
        try:
            # Our own timeouts: a silent Redis must fail restoration, never hang it.
            self.client: aioredis.Redis = aioredis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise ConfigError(
                "WAGATE_REDIS_URL is not a redis URL (redis://, rediss:// or unix://)"
            ) from exc
        self._closed = False

    def key(self, account_id: str) -> str:
        return f"{self.prefix}{account_id}"

    async def save(self, account_id: str, blob: bytes) -> None:
        sealed = seal(self.cipher, account_id, blob)
        mapping: dict[str | bytes, str | bytes] = {
            "checksum": sealed.checksum,
            "ciphertext": sealed.ciphertext,
        }
        with _answering():
            await self.client.hset(self.key(account_id), mapping=mapping)  # type: ignore[arg-type]

    async def load(self, account_id: str) -> bytes | None:
        with _answering():
            found: dict[bytes, bytes] = await self.client.hgetall(self.key(account_id))  # type: ignore[assignment]
        if not found:
            return None
        if b"checksum" not in found or b"ciphertext" not in found:
            raise CredentialsCorrupt("stored credentials are incomplete")
        # Undecodable bytes become U+FFFD and then simply fail the checksum comparison.
        stored = found[b"checksum"].decode("utf-8", "replace")
        return unseal(self.cipher, account_id, Sealed(found[b"ciphertext"], stored))

    async def delete(self, account_id: str) -> None:
        with _answering():
            await self.client.delete(self.key(account_id))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.aclose()
