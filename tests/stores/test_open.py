"""open_auth_store: WAGATE_AUTH_STORE picks the store; redis without a URL is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.stores.support import KEY
from wagate.core.crypto import Cipher
from wagate.db.database import Database
from wagate.errors import ConfigError
from wagate.stores import open_auth_store
from wagate.stores.db import DbAuthStore
from wagate.stores.file import FileAuthStore
from wagate.stores.redis import RedisAuthStore


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/open.db")
    yield db
    await db.close()


async def test_db_is_the_default(tmp_path: Path, sqlite: Database) -> None:
    store = open_auth_store("db", sqlite, Cipher(KEY), data_dir=tmp_path / "data")
    assert isinstance(store, DbAuthStore) and store.db is sqlite
    await store.close()


async def test_file_store_lives_in_data_dir(tmp_path: Path, sqlite: Database) -> None:
    store = open_auth_store("file", sqlite, Cipher(KEY), data_dir=tmp_path / "data")
    assert isinstance(store, FileAuthStore)
    assert store.directory == tmp_path / "data" / "auth" and store.directory.is_dir()
    await store.close()


async def test_redis_without_url_is_a_config_error(tmp_path: Path, sqlite: Database) -> None:
    with pytest.raises(ConfigError, match="WAGATE_REDIS_URL"):
        open_auth_store("redis", sqlite, Cipher(KEY), data_dir=tmp_path / "data")


async def test_redis_with_url(tmp_path: Path, sqlite: Database) -> None:
    store = open_auth_store(  # opening connects nothing yet
        "redis",
        sqlite,
        Cipher(KEY),
        data_dir=tmp_path / "data",
        redis_url="redis://127.0.0.1:6379/0",
    )
    assert isinstance(store, RedisAuthStore) and store.name == "redis"
    await store.close()
