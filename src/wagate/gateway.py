"""The running gateway: every resource opened in order and closed in reverse."""

from __future__ import annotations

import asyncio
import ctypes.util
import importlib.util
import logging
import secrets
from functools import partial

from rich.console import Console

from wagate import collector
from wagate.bus import Wakeup
from wagate.config import Settings
from wagate.crypto import Cipher, load_or_create_key
from wagate.db import Commit, Database
from wagate.dispatcher import Dispatcher
from wagate.engines.base import Engine
from wagate.engines.sim import SimEngine, SimServer
from wagate.engines.whatsmeow import INSTALL_HINT, WhatsmeowEngine
from wagate.errors import EngineUnavailable
from wagate.events import CommitWatch
from wagate.keys import KeyCache, ensure_admin_key
from wagate.lifecycle import reopen
from wagate.metrics import Metrics
from wagate.sessions import SessionManager
from wagate.stores import open_auth_store
from wagate.stores.base import AuthStore
from wagate.tasks import BackgroundTasks

STREAM_READS = 4
log = logging.getLogger("wagate.gateway")


def build_engine(settings: Settings) -> Engine:
    """The configured engine; never a silent fallback to the simulator."""
    if settings.engine == "sim":
        return SimEngine(SimServer(settings.sim_time_scale))
    # The hosts load neonize, never this process; check here so the message comes at once.
    if importlib.util.find_spec("neonize") is None:
        raise EngineUnavailable(f"the whatsmeow engine is not installed; {INSTALL_HINT}")
    if ctypes.util.find_library("magic") is None:
        raise EngineUnavailable(f"the system library libmagic is missing; {INSTALL_HINT}")
    return WhatsmeowEngine(
        settings.data_dir,
        hosts=settings.engine_hosts,
        connect_timeout=settings.engine_connect_timeout,
    )


class Gateway:
    """Database, cipher, credential store, engine and sessions, as one unit."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        # Tests and benchmarks may hand in an engine; otherwise the settings choose one.
        self._given_engine = engine
        self.bus = Wakeup()
        # Event streams read the database a few at a time: a thousand streams woken at once
        # must not take every pooled connection from the writers (engine events, commands).
        self.stream_reads = asyncio.Semaphore(STREAM_READS)
        self.metrics = Metrics()
        self.keys = KeyCache()
        # Set when shutdown begins: event streams end so the server's drain does not wait on them.
        self.stopping = False
        self.db = Database(settings.database_url, on_commit=self._committed)
        # Streams learn of this process's commits from the bus, of other processes' from this.
        self.commit_watch = CommitWatch(self.db, self.bus)
        self._tasks = BackgroundTasks("gateway")
        self.cipher: Cipher | None = None
        self.auth: AuthStore | None = None
        self.engine: Engine | None = None
        self.sessions: SessionManager | None = None
        self.dispatcher: Dispatcher | None = None
        # Set when this start created the admin key: shown once, never logged.
        self.new_admin_key: str | None = None
        self._closed = False

    async def open(self) -> None:
        settings = self.settings
        await self.db.upgrade()
        key = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.cipher = Cipher(load_or_create_key(settings.data_dir, key))
        if settings.admin_key is None:
            self.new_admin_key = await self.db.run(ensure_admin_key)
        self.auth = open_auth_store(settings, self.db, self.cipher)
        self.engine = self._given_engine or build_engine(settings)
        self.sessions = SessionManager(
            self.db,
            self.engine,
            self.auth,
            metrics=self.metrics,
            link_rates=(settings.link_rate_per_account, settings.link_rate_per_workspace),
        )
        if isinstance(self.engine, WhatsmeowEngine):
            # Sessions of a restarted engine host come back through restoration's own path.
            self.engine.restorer = partial(reopen, self.sessions)
        await self.sessions.start(
            restore_concurrency=settings.restore_concurrency,
            attempt_silence=settings.attempt_silence_seconds,
            progress=Console(stderr=True).is_terminal,
        )
        self.dispatcher = Dispatcher(self.db, self.cipher, settings, metrics=self.metrics)
        await self.dispatcher.start()
        self._tasks.spawn(self.commit_watch.run(), name="commit-watch")
        log.info("gateway started", extra={"engine": self.engine.name, "db": self.db.backend})

    @property
    def admin_key(self) -> str | None:
        key = self.settings.admin_key
        return key.get_secret_value() if key is not None else None

    def manager(self) -> SessionManager:
        if self.sessions is None:
            raise EngineUnavailable("the gateway is not running")
        return self.sessions

    def tune_gc(self) -> None:
        """For a process that is the gateway (``wagate serve``): full garbage collections on a
        timer instead of as the heap grows (see wagate.collector)."""
        collector.tune()
        self._tasks.spawn(collector.collect_forever(), name="garbage-collection")

    def _committed(self, commit: Commit) -> None:
        self.bus.notify(commit.topics, commit.events)

    def new_webhook_secret(self) -> str:
        return "whsec_" + secrets.token_urlsafe(32)

    def begin_shutdown(self) -> None:
        """Tell long-lived readers (event streams) to finish; idempotent."""
        self.stopping = True
        self.bus.notify()

    async def close(self) -> None:
        if self._closed:
            return
        self.begin_shutdown()
        self._closed = True
        await self._tasks.close()
        if self.dispatcher is not None:
            await self.dispatcher.close()
        if self.sessions is not None:
            await self.sessions.close()
        if self.auth is not None:
            await self.auth.close()
        await self.db.close()
        log.info("gateway stopped")
