"""Auth-state stores: where engine credentials live, encrypted and checksummed."""

from __future__ import annotations

from wagate.config import Settings
from wagate.crypto import Cipher
from wagate.db import Database
from wagate.errors import ConfigError
from wagate.stores.base import AuthStore


def open_auth_store(settings: Settings, db: Database, cipher: Cipher) -> AuthStore:
    """The store ``WAGATE_AUTH_STORE`` names."""
    if settings.auth_store == "file":
        from wagate.stores.file import FileAuthStore

        return FileAuthStore(settings.data_dir / "auth", cipher)
    if settings.auth_store == "redis":
        if not settings.redis_url:
            raise ConfigError("WAGATE_AUTH_STORE=redis needs WAGATE_REDIS_URL")
        from wagate.stores.redis import RedisAuthStore

        return RedisAuthStore(settings.redis_url, cipher)
    from wagate.stores.db import DbAuthStore

    return DbAuthStore(db, cipher)
