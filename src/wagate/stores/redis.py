"""Credentials in Redis: one hash per account holding the checksum and the ciphertext."""

from __future__ import annotations

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from wagate.crypto import Cipher
from wagate.errors import CredentialsCorrupt, StoreUnavailable
from wagate.stores.sealed import Sealed, seal, unseal


class RedisAuthStore:
    """``<prefix><account id>`` → hash ``{checksum, ciphertext}``, written in one HSET."""

    name = "redis"

    def __init__(self, url: str, cipher: Cipher, prefix: str = "wagate:auth:") -> None:
        self.cipher = cipher
        self.prefix = prefix
        self.client: aioredis.Redis = aioredis.Redis.from_url(url)
        self._closed = False

    def key(self, account_id: str) -> str:
        return f"{self.prefix}{account_id}"

    async def save(self, account_id: str, blob: bytes) -> None:
        sealed = seal(self.cipher, account_id, blob)
        mapping: dict[str | bytes, str | bytes] = {
            "checksum": sealed.checksum,
            "ciphertext": sealed.ciphertext,
        }
        try:
            await self.client.hset(self.key(account_id), mapping=mapping)  # type: ignore[arg-type]
        except RedisError as exc:
            raise StoreUnavailable("the redis credential store did not answer") from exc

    async def load(self, account_id: str) -> bytes | None:
        try:
            found: dict[bytes, bytes] = await self.client.hgetall(self.key(account_id))  # type: ignore[assignment]
        except RedisError as exc:
            raise StoreUnavailable("the redis credential store did not answer") from exc
        if not found:
            return None
        if b"checksum" not in found or b"ciphertext" not in found:
            raise CredentialsCorrupt("stored credentials are incomplete")
        sealed = Sealed(found[b"ciphertext"], found[b"checksum"].decode())
        return unseal(self.cipher, account_id, sealed)

    async def delete(self, account_id: str) -> None:
        try:
            await self.client.delete(self.key(account_id))
        except RedisError as exc:
            raise StoreUnavailable("the redis credential store did not answer") from exc

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.aclose()
