"""The composition root: every resource opened in order and closed in reverse.

This is the one module that reads ``Settings`` and turns them into the values each component
takes (durations, limits, URLs); nothing below it sees the settings, and nothing is wired onto a
component after it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import importlib.util
import logging
import secrets
import socket
from functools import partial

import httpx
from aiohttp.abc import AbstractResolver
from rich.console import Console

from wagate.config import Settings
from wagate.core import collector
from wagate.core.backoff import Backoff
from wagate.core.cluster import LeaseTerms
from wagate.core.crypto import Cipher
from wagate.core.tasks import BackgroundTasks
from wagate.db.bus import Wakeup
from wagate.db.database import Commit, Database
from wagate.engines.base import Engine
from wagate.engines.sim import SimEngine, SimServer
from wagate.engines.simclient import RemoteSimEngine, check_reachable
from wagate.engines.whatsmeow.engine import INSTALL_HINT, WhatsmeowEngine
from wagate.errors import EngineUnavailable
from wagate.metrics import Metrics
from wagate.services import cluster
from wagate.services.event_log import CommitWatch
from wagate.services.keys import KeyCache, ensure_admin_key
from wagate.sessions import commands, restore, sweeper
from wagate.sessions.manager import SessionManager
from wagate.sessions.node import Node
from wagate.stores import open_auth_store
from wagate.stores.base import AuthStore
from wagate.stores.keyfile import load_or_create_key
from wagate.webhooks.dispatcher import DeliveryPolicy, Dispatcher
from wagate.webhooks.guard import Guard

STREAM_READS = 4
# Longer than an engine call may take on the node a request is carried to.
PEER_TIMEOUT = 30.0
log = logging.getLogger("wagate.gateway")


def build_engine(settings: Settings) -> Engine:
    """The configured engine; never a silent fallback to the simulator."""
    if settings.engine == "sim":
        if settings.sim_url:
            return RemoteSimEngine(settings.sim_url)
        return SimEngine(SimServer(settings.sim_time_scale))
    if settings.sim_url:
        raise EngineUnavailable("WAGATE_SIM_URL is for the simulator: pass --engine sim with it")
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


def node_url(settings: Settings) -> str:
    """Where the other nodes reach this one: ``WAGATE_NODE_URL``, else the listen address (the
    hostname when it listens on every address)."""
    if settings.node_url:
        return settings.node_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


async def preflight(settings: Settings) -> None:
    """What ``wagate serve`` checks before it starts serving, so a mistake is one clear line:
    the database's schema is brought up to date, and this node's secret key is the cluster's;
    a shared simulator must answer."""
    if settings.engine == "sim" and settings.sim_url:
        await check_reachable(settings.sim_url)
    db = Database(settings.database_url)
    try:
        await db.upgrade()
        key = settings.secret_key.get_secret_value() if settings.secret_key else None
        fingerprint = Cipher(load_or_create_key(settings.data_dir, key)).fingerprint
        async with db.read_sessions() as session:
            await cluster.check_key(session, settings.node_name, fingerprint)
    finally:
        await db.close()


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        max_attempts=settings.webhook_max_attempts,
        backoff=Backoff(
            min=settings.webhook_retry_min_seconds, max=settings.webhook_retry_max_seconds
        ),
        concurrency=settings.webhook_concurrency,
    )


class Gateway:
    """Database, cipher, credential store, engine, sessions and webhooks, as one unit.

    ``open()`` opens them in order; if any step fails, what was already open is closed again
    before the error propagates. ``close()`` closes them in reverse order and is idempotent.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.settings = settings
        # Tests and benchmarks may hand in an engine; otherwise the settings choose one.
        self._given_engine = engine
        # Where webhooks may go; tests hand in a resolver that answers for made-up names.
        self.guard = Guard(settings.webhook_allow_private, resolver)
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
        # Set once restoration at start has finished (readiness).
        self.restored = asyncio.Event()
        self._tasks = BackgroundTasks("gateway")
        self._stack = contextlib.AsyncExitStack()
        self.cipher: Cipher | None = None
        self.auth: AuthStore | None = None
        self.engine: Engine | None = None
        self.sessions: SessionManager | None = None
        self.dispatcher: Dispatcher | None = None
        self.node: Node | None = None
        # Carries a request to the node that serves its account (wagate.api.forward).
        self.peers: httpx.AsyncClient | None = None
        # Set when this start created the admin key: shown once, never logged.
        self.new_admin_key: str | None = None
        self._closed = False

    async def open(self) -> None:
        """Open everything in order; a failure closes what was opened and propagates."""
        try:
            await self._open(self._stack)
        except BaseException:
            await self.close()
            raise

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        stack.push_async_callback(self.db.close)
        await self.db.upgrade()
        key = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.cipher = Cipher(load_or_create_key(settings.data_dir, key))
        if settings.admin_key is None:
            self.new_admin_key = await self.db.run(ensure_admin_key)
        self.auth = open_auth_store(
            settings.auth_store,
            self.db,
            self.cipher,
            data_dir=settings.data_dir,
            redis_url=settings.redis_url,
        )
        stack.push_async_callback(self.auth.close)
        self.engine = self._given_engine or build_engine(settings)
        self.sessions = SessionManager(
            self.db,
            self.engine,
            self.auth,
            metrics=self.metrics,
            link_rates=(settings.link_rate_per_account, settings.link_rate_per_workspace),
            node=settings.node_name,
            terms=LeaseTerms(settings.lease_seconds),
        )
        node = self.node = Node(
            self.sessions,
            key_fingerprint=self.cipher.fingerprint,
            url=node_url(settings),
        )
        # Closed in reverse: the node leaves (its leases released) once its sessions are closed.
        stack.push_async_callback(node.leave)
        stack.push_async_callback(self.sessions.close)
        await node.join()
        # Sessions the engine loses (a crashed engine host) come back through restoration's path.
        await self.sessions.start(reopen=partial(commands.reopen, self.sessions))
        ids = await restore.restorable(self.sessions)
        self.dispatcher = Dispatcher(
            self.db, self.cipher, delivery_policy(settings), metrics=self.metrics, guard=self.guard
        )
        stack.push_async_callback(self.dispatcher.close)
        await self.dispatcher.start()
        stack.push_async_callback(node.stop)
        node.start()
        self.peers = httpx.AsyncClient(timeout=PEER_TIMEOUT)
        stack.push_async_callback(self.peers.aclose)
        stack.push_async_callback(self._tasks.close)
        self._tasks.spawn(self._restore(self.sessions, ids), name="restore")
        self._tasks.spawn(
            sweeper.sweep_forever(self.sessions, settings.attempt_silence_seconds), name="sweeper"
        )
        self._tasks.spawn(self.commit_watch.run(), name="commit-watch")
        log.info("gateway started", extra={"engine": self.engine.name, "db": self.db.backend})

    async def _restore(self, sessions: SessionManager, ids: list[str]) -> None:
        """Reopen every linked account read at start, in the background; then ready."""
        try:
            report = await restore.restore(
                sessions,
                ids,
                self.settings.restore_concurrency,
                progress=Console(stderr=True).is_terminal,
            )
            self.metrics.restore_seconds.set(report.seconds)
        finally:
            self.restored.set()
            if self.node is not None:
                self.node.start_scanning()

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
        timer instead of as the heap grows (see wagate.core.collector)."""
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
        """Close what ``open`` opened, in reverse order; idempotent."""
        if self._closed:
            return
        self.begin_shutdown()
        self._closed = True
        await self._stack.aclose()
        await self.db.close()  # opened with the gateway itself, whether or not ``open`` ran
        log.info("gateway stopped")
