"""Auth-state stores: where engine credentials live, encrypted and checksummed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from wagate.core.crypto import Cipher
from wagate.db.database import Database
from wagate.errors import ConfigError
from wagate.stores.base import AuthStore

StoreName = Literal["db", "file", "redis"]


def open_auth_store(
    kind: StoreName,
    db: Database,
    cipher: Cipher,
    *,
    data_dir: Path,
    redis_url: str | None = None,
) -> AuthStore:
    """The store ``WAGATE_AUTH_STORE`` names: ``file`` keeps it under ``data_dir``, ``redis``
    needs ``redis_url``."""
    if kind == "file":
        from wagate.stores.file import FileAuthStore

        return FileAuthStore(data_dir / "auth", cipher)
    if kind == "redis":
        if not redis_url:
            raise ConfigError("WAGATE_AUTH_STORE=redis needs WAGATE_REDIS_URL")
        from wagate.stores.redis import RedisAuthStore

        return RedisAuthStore(redis_url, cipher)
    from wagate.stores.db import DbAuthStore

    return DbAuthStore(db, cipher)
