"""Shared fixtures: a fresh database per test on every backend, service URLs, factories."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from wagate.db.database import Database, async_url

# The tests' webhook receivers listen on 127.0.0.1, where a production gateway never sends
# (wagate.webhooks.guard); the SSRF tests turn this off again for their own gateways. Set before
# any Settings is read, and inherited by every `wagate serve` the tests start.
os.environ.setdefault("WAGATE_WEBHOOK_ALLOW_PRIVATE", "true")

BACKENDS = ("sqlite", "postgres", "mysql")


def service_url(name: str) -> str:
    """``WAGATE_TEST_<NAME>_URL``; skips without it, fails when services are required."""
    var = f"WAGATE_TEST_{name.upper()}_URL"
    url = os.environ.get(var)
    if url:
        return url
    if os.environ.get("WAGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{var} is not set but WAGATE_REQUIRE_SERVICES=1")
    pytest.skip(f"{var} is not set")


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture
async def fresh_database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]):  # type: ignore[no-untyped-def]
    """A factory: ``await fresh_database_url(backend)`` → URL of a new empty database,
    dropped when the test ends."""
    created: list[tuple[str, str]] = []

    async def make(backend: str) -> str:
        name = f"wagate_t_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
        server = service_url(backend)
        await _admin(server, f"CREATE DATABASE {name}")
        created.append((server, name))
        return make_url(async_url(server)).set(database=name).render_as_string(hide_password=False)

    yield make
    for server, name in created:
        force = (
            " WITH (FORCE)" if make_url(server).get_backend_name().startswith("postgres") else ""
        )
        await _admin(server, f"DROP DATABASE IF EXISTS {name}{force}")


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    """A new empty database on each backend in turn."""
    return await fresh_database_url(request.param)  # type: ignore[no-any-return]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated database on each backend in turn."""
    db = Database(database_url)
    await db.upgrade()
    yield db
    await db.close()


@pytest.fixture
def redis_url() -> str:
    return service_url("redis")


ADMIN_KEY = "wg_admin_test_key_0123456789abcdefghij"


@pytest.fixture
async def gateway_factory(tmp_path):  # type: ignore[no-untyped-def]
    """A factory: ``await gateway_factory(database_url, **settings)`` → an ``ApiClient`` talking
    to a running in-process gateway (sim engine, fast clock); all are closed after the test."""
    import httpx

    from tests.apiclient import ApiClient
    from wagate.api.app import create_app
    from wagate.config import Settings

    opened: list[tuple[object, object]] = []

    async def make(database_url: str, **overrides: object) -> ApiClient:
        values: dict[str, object] = {
            "database_url": database_url,
            "engine": "sim",
            "sim_time_scale": 0.01,
            "data_dir": tmp_path / f"data{len(opened)}",
            "admin_key": ADMIN_KEY,
        }
        values.update(overrides)
        app = create_app(Settings(**values))  # type: ignore[arg-type]
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://wagate.test"
        )
        opened.append((lifespan, http))
        return ApiClient(http, app, ADMIN_KEY)

    yield make
    for lifespan, http in reversed(opened):
        await http.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def api(gateway_factory, database_url):  # type: ignore[no-untyped-def]
    """A running gateway on each database backend in turn."""
    return await gateway_factory(database_url)
