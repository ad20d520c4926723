"""Every Prometheus metric of wagate, in one place (DESIGN §8).

Each ``Gateway`` owns one ``Metrics`` with its own ``CollectorRegistry``: tests run many gateways
in one process and must not share counters. Where the numbers come from:

- ``wagate_link_attempts_total{outcome}``, ``wagate_qr_codes_total`` and
  ``wagate_time_to_link_seconds`` are counted from the events a transaction recorded
  (``link.failed`` / ``link.succeeded`` / ``link.qr``), after it committed: the SessionManager runs
  its transactions through ``run_counted``. A rolled-back transaction counts nothing.
- ``wagate_engine_events_total{type}``: ``SessionManager.apply``, one per engine event received.
- ``wagate_accounts{status}``: read from the database at scrape time (one ``GROUP BY``), so it is
  right even when other processes change accounts.
- ``wagate_restore_seconds``: how long the last restoration at start took.
- ``wagate_webhook_deliveries_total{result}`` and ``wagate_webhook_delivery_seconds``: the webhook
  dispatcher calls ``metrics.observe_delivery(result, seconds)`` once per delivery attempt, with
  ``result`` one of ``delivered``, ``failed`` (will be retried) or ``dead``.
- ``wagate_sse_streams``: Server-Sent Events streams open now.
- ``wagate_node_sessions{node}``: leases each node holds, read from the database at scrape time.
- ``wagate_lease_takeovers_total{reason}``: leases this node took from a node that let them go
  (``handoff``) or went silent (``failover``); ``wagate_lease_lost_total``: leases this node found
  taken or gone while it still served the session (it closed the session then).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.event_types import EventType
from wagate.core.states import AccountStatus
from wagate.db.database import Database, recorded
from wagate.db.models import Account, Event, Lease, Node

T = TypeVar("T")

# Linking takes seconds to minutes (a QR attempt lasts at most 160 s).
LINK_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 160.0, 300.0)
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELIVERY_RESULTS = ("delivered", "failed", "dead")


class Metrics:
    """wagate's metrics over one registry; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.link_attempts = Counter(
            "wagate_link_attempts", "Link attempts ended, by outcome.", ["outcome"], registry=r
        )
        self.qr_codes = Counter("wagate_qr_codes", "QR codes shown to users.", registry=r)
        self.time_to_link = Histogram(
            "wagate_time_to_link_seconds",
            "Seconds from the start of a link attempt to the connected session.",
            buckets=LINK_BUCKETS,
            registry=r,
        )
        self.accounts = Gauge(
            "wagate_accounts", "Accounts by status (read at scrape time).", ["status"], registry=r
        )
        self.webhook_deliveries = Counter(
            "wagate_webhook_deliveries",
            "Webhook delivery attempts, by result.",
            ["result"],
            registry=r,
        )
        self.webhook_delivery_seconds = Histogram(
            "wagate_webhook_delivery_seconds",
            "Seconds one webhook POST took.",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.restore_seconds = Gauge(
            "wagate_restore_seconds", "Seconds the last restoration at start took.", registry=r
        )
        self.engine_events = Counter(
            "wagate_engine_events", "Engine events received, by type.", ["type"], registry=r
        )
        self.sse_streams = Gauge(
            "wagate_sse_streams", "Server-Sent Events streams open now.", registry=r
        )
        self.node_sessions = Gauge(
            "wagate_node_sessions",
            "Leases (sessions and open attempts) each node holds (read at scrape time).",
            ["node"],
            registry=r,
        )
        self.lease_takeovers = Counter(
            "wagate_lease_takeovers",
            "Leases this node took over, by reason (handoff, failover).",
            ["reason"],
            registry=r,
        )
        self.lease_lost = Counter(
            "wagate_lease_lost",
            "Leases this node lost while it still served their session.",
            registry=r,
        )

    def observe_delivery(self, result: str, seconds: float) -> None:
        """One webhook delivery attempt: ``delivered``, ``failed`` (retried later) or ``dead``."""
        self.webhook_deliveries.labels(result=result).inc()
        self.webhook_delivery_seconds.observe(seconds)

    def engine_event(self, type_name: str) -> None:
        self.engine_events.labels(type=type_name).inc()

    def observe_events(self, events: Iterable[Event]) -> None:
        """Count what committed events say about link attempts."""
        for event in events:
            if event.type == EventType.LINK_QR:
                self.qr_codes.inc()
            elif event.type == EventType.LINK_SUCCEEDED:
                self.link_attempts.labels(outcome="linked").inc()
                seconds = event.data.get("seconds")
                if isinstance(seconds, int | float):
                    self.time_to_link.observe(seconds)
            elif event.type == EventType.LINK_FAILED:
                self.link_attempts.labels(outcome=str(event.data.get("outcome"))).inc()

    async def refresh_accounts(self, session: AsyncSession) -> None:
        query = select(Account.status, func.count()).group_by(Account.status)
        counts = {status: n for status, n in (await session.execute(query)).all()}
        for status in AccountStatus:
            self.accounts.labels(status=status.value).set(counts.pop(status.value, 0))
        for other, n in counts.items():  # a status this version does not know still shows
            self.accounts.labels(status=other).set(n)
        query = (
            select(Node.name, func.count(Lease.account_id))
            .outerjoin(Lease, Lease.node == Node.name)
            .group_by(Node.name)
        )
        for node, n in (await session.execute(query)).all():
            self.node_sessions.labels(node=node).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def run_counted(
    db: Database,
    metrics: Metrics | None,
    work: Callable[[AsyncSession], Awaitable[T]],
    **kwargs: Any,
) -> T:
    """``db.run(work)``, then count the events the committed transaction recorded."""
    if metrics is None:
        return await db.run(work, **kwargs)
    seen: list[Event] = []

    async def counted(session: AsyncSession) -> T:
        seen.clear()  # a retried transaction starts over
        result = await work(session)
        seen.extend(recorded(session))
        return result

    result = await db.run(counted, **kwargs)
    metrics.observe_events(seen)
    return result
