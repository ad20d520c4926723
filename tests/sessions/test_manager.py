"""The SessionManager's handler table: every engine event type the Engine protocol names is
applied, either by a handler in one transaction or (credentials) by the credential store."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sessions.test_state_machine import NullEngine
from tests.stores.support import make_account
from wagate.core.crypto import Cipher
from wagate.db.database import Database
from wagate.engines import base as ev
from wagate.sessions import handlers
from wagate.sessions.context import Ctx
from wagate.sessions.manager import SessionManager
from wagate.stores.db import DbAuthStore

KEY = b"k" * 32


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/manager.db")
    await db.upgrade()
    yield db
    await db.close()


def test_every_engine_event_type_has_a_handler(tmp_path: Path) -> None:
    manager = SessionManager(Database(f"sqlite+aiosqlite:///{tmp_path}/x.db"), NullEngine())
    event_types = set(typing.get_args(ev.EngineEvent))
    assert len(event_types) == 15  # DESIGN §4 names fifteen
    # Credentials go to the store, outside any transaction; every other type has its handler.
    assert set(manager.handlers) == event_types - {ev.CredentialsUpdated}
    # Each handler is the one of its own type (no copy-paste slip in the table).
    for event_type, handler in manager.handlers.items():
        assert handler.__module__ == handlers.__name__
        hints = typing.get_type_hints(handler)
        assert hints["event"] is event_type, (event_type, handler.__name__)


async def test_credentials_updated_reaches_the_store_only_from_the_lease_holder(
    database: Database,
) -> None:
    """A node that does not serve the account (its lease is another's, or nobody's) must not
    overwrite the credentials its owner keeps."""
    store = DbAuthStore(database, Cipher(KEY))
    account_id = await make_account(database)
    manager = SessionManager(database, NullEngine(), store, node="a")
    await manager.apply(account_id, ev.CredentialsUpdated(b"stale"))
    assert await store.load(account_id) is None

    async def claim(ctx: Ctx) -> bool:
        return await ctx.claim()

    assert await manager.transact(account_id, claim, fence=False)
    assert manager.held == {account_id: 1}
    await manager.apply(account_id, ev.CredentialsUpdated(b"creds"))
    assert await store.load(account_id) == b"creds"
