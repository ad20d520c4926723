"""API keys: generated once, stored as SHA-256 hashes with a short visible prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.accounts import Caller
from wagate.errors import Unauthorized
from wagate.models import ApiKey, utcnow

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


async def ensure_admin_key(session: AsyncSession) -> str | None:
    """Create the admin key on first start when none is configured or stored.

    Returns the new plain key (to be shown once), or None when an admin key already exists.
    """
    query = select(ApiKey.id).where(ApiKey.workspace_id.is_(None), ApiKey.revoked_at.is_(None))
    if (await session.execute(query.limit(1))).first() is not None:
        return None
    _, key = add_key(session, None)
    return key
