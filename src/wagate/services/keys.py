"""API keys: generated once, stored as SHA-256 hashes with a short visible prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.db.models import ApiKey, utcnow
from wagate.errors import NotFound, Unauthorized

KEY_PREFIX = "wg_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new key and its visible prefix (``wg_`` + 8 characters)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[: len(KEY_PREFIX) + 8]


def add_key(session: AsyncSession, workspace_id: str | None) -> tuple[ApiKey, str]:
    """Create a key row; the plain key is returned once and never stored."""
    key, prefix = generate_key()
    row = ApiKey(workspace_id=workspace_id, prefix=prefix, key_hash=hash_key(key))
    session.add(row)
    return row, key


async def list_keys(session: AsyncSession, workspace_id: str) -> list[ApiKey]:
    """A workspace's keys, revoked ones included, oldest first."""
    query = (
        select(ApiKey)
        .where(ApiKey.workspace_id == workspace_id)
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    return list((await session.execute(query)).scalars())


async def revoke_key(session: AsyncSession, workspace_id: str, key_id: str) -> ApiKey:
    """Revoke a workspace's key; revoking twice keeps the first revocation time."""
    query = select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id)
    row = (await session.execute(query.with_for_update())).scalar_one_or_none()
    if row is None:
        raise NotFound("key not found", key_id=key_id)
    row.revoked_at = row.revoked_at or utcnow()
    await session.flush()
    return row


async def authenticate(
    session: AsyncSession, presented: str, admin_key: str | None, now: datetime | None = None
) -> Caller:
    """The caller a bearer key stands for; ``Unauthorized`` for unknown or revoked keys."""
    if admin_key is not None and hmac.compare_digest(presented.encode(), admin_key.encode()):
        return Caller(key_id=None, workspace_id=None)
    digest = hash_key(presented)
    row = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == digest))
    ).scalar_one_or_none()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("unknown API key")
    if row.revoked_at is not None and row.revoked_at <= (now or utcnow()):
        raise Unauthorized("API key revoked")
    return Caller(key_id=row.id, workspace_id=row.workspace_id)


class KeyCache:
    """Callers of keys presented in the last ``ttl`` seconds, so that most requests need no
    read. Keyed by the key's hash, as the table is; only known, unrevoked keys are kept. A key
    revoked through this process is forgotten at once; one revoked by another process sharing
    the database is refused within ``ttl``."""

    def __init__(self, ttl: float = 2.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, digest: str) -> Caller | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, digest: str, caller: Caller) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()  # rare (more live keys than the size): start over
        self._entries[digest] = (time.monotonic() + self.ttl, caller)

    def forget(self, key_id: str) -> None:
        for digest in [d for d, (_, caller) in self._entries.items() if caller.key_id == key_id]:
            del self._entries[digest]


async def ensure_admin_key(session: AsyncSession) -> str | None:
    """Create the admin key on first start when none is configured or stored.

    Returns the new plain key (to be shown once), or None when an admin key already exists.
    """
    query = select(ApiKey.id).where(ApiKey.workspace_id.is_(None), ApiKey.revoked_at.is_(None))
    if (await session.execute(query.limit(1))).first() is not None:
        return None
    _, key = add_key(session, None)
    return key
