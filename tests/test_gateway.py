"""The composition root: what ``open`` opened is closed again when a later step fails, and the
HTTP app's start fails cleanly rather than leaving resources behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from wagate.api.app import create_app
from wagate.config import Settings
from wagate.engines.base import EngineSink, Reopen
from wagate.engines.sim import SimEngine, SimServer
from wagate.errors import EngineUnavailable
from wagate.gateway import Gateway


class BrokenEngine(SimEngine):
    """A simulator whose start fails, as an engine whose hosts cannot launch does."""

    def __init__(self) -> None:
        super().__init__(SimServer(0.01))
        self.closed = 0

    async def start(self, sink: EngineSink, reopen: Reopen | None = None) -> None:
        raise EngineUnavailable("engine hosts could not start")

    async def close(self) -> None:
        self.closed += 1
        await super().close()


def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path}/gw.db",
        data_dir=tmp_path / "data",
        engine="sim",
        admin_key="admin-key-for-tests-0123456789abcdef",
    )


async def test_a_failed_open_closes_what_was_opened(tmp_path: Path) -> None:
    engine = BrokenEngine()
    gateway = Gateway(settings(tmp_path), engine=engine)
    with pytest.raises(EngineUnavailable):
        await gateway.open()
    # The sessions were opened before the engine failed to start: closing them closed the engine.
    assert engine.closed == 1 and gateway.db._closed
    assert gateway.db._closed  # the database's pools were disposed
    await gateway.close()  # idempotent
    assert engine.closed == 1 and gateway.db._closed


async def test_close_closes_everything_once(tmp_path: Path) -> None:
    engine = SimEngine(SimServer(0.01))
    gateway = Gateway(settings(tmp_path), engine=engine)
    await gateway.open()
    assert engine.healthy() and await gateway.db.ping()
    await gateway.close()
    await gateway.close()
    assert not engine.healthy()
    assert gateway.dispatcher is not None and gateway.dispatcher._closed
    assert gateway.db._closed


async def test_the_app_does_not_start_when_the_gateway_cannot_open(tmp_path: Path) -> None:
    engine = BrokenEngine()
    gateway = Gateway(settings(tmp_path), engine=engine)
    app = create_app(gateway=gateway)
    with pytest.raises(EngineUnavailable):
        async with app.router.lifespan_context(app):
            pass
    assert engine.closed == 1
