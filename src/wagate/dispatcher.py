"""The webhook dispatcher: delivers the outbox's deliveries at least once, in ``seq`` order per
account, with retries, backoff and a dead letter (DESIGN §7).

It reads its work from ``webhook_deliveries`` only; the bus wakes it after a commit and a timer
covers the rest (retries coming due, changes made by other processes such as the CLI). Accounts
are served concurrently, at most ``concurrency`` requests at once, one at a time per account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from wagate import deliveries, webhooks
from wagate.backoff import Backoff
from wagate.bus import Wakeup
from wagate.config import Settings
from wagate.crypto import Cipher
from wagate.db import Database
from wagate.deliveries import Job
from wagate.logs import WagateMessage
from wagate.metrics import Metrics
from wagate.models import utcnow
from wagate.outbox import envelope
from wagate.tasks import BackgroundTasks

log = logging.getLogger("wagate.webhooks")


def classify(status: int | None, exc: BaseException | None) -> str | None:
    """The failure class logged and stored in ``last_error``; None for a 2xx answer."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    if exc is not None or status is None:
        return "other"
    if 200 <= status < 300:
        return None
    if 400 <= status < 500:
        return "http_4xx"
    return "http_5xx" if 500 <= status < 600 else "other"


class _Settle(NamedTuple):
    delivery_id: str
    now: datetime
    status: int | None
    error: str | None
    retry_at: datetime | None


async def _settle_all(batch: list[_Settle], session: AsyncSession) -> list[str]:
    return [
        await deliveries.settle(
            session, v.delivery_id, now=v.now, status=v.status, error=v.error, retry_at=v.retry_at
        )
        for v in batch
    ]


class Dispatcher:
    """Sends due deliveries until ``close()``; every state it keeps lives in the database."""

    def __init__(
        self,
        db: Database,
        bus: Wakeup,
        cipher: Cipher,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        concurrency: int = 16,
        timeout: float = 10.0,
        poll: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.cipher = cipher
        self.metrics = metrics
        self.max_attempts = settings.webhook_max_attempts
        self.backoff = Backoff(
            min=settings.webhook_retry_min_seconds, max=settings.webhook_retry_max_seconds
        )
        self.concurrency = concurrency
        self.poll = poll
        # A claimed row is due again after this, should the process die mid-request.
        self.lease = timeout + 5.0
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop_task = BackgroundTasks("webhooks")
        self._sending = BackgroundTasks("webhook-deliveries")
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Settled results wait here and are committed together: one transaction per batch
        # instead of one per request (a group commit), which the single SQLite writer needs.
        self._settles: list[tuple[_Settle, asyncio.Future[str]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self._timeout, transport=self._transport, follow_redirects=False
        )
        self._loop_task.spawn(self._run(), name="dispatch")

    async def _run(self) -> None:
        while not self._stopping:
            seen = self.bus.generation
            try:
                wait = await self._dispatch_due()
            except Exception:  # the database may be briefly away; the timer tries again
                log.warning("webhook dispatch round failed", exc_info=True)
                wait = self.poll
            await self.bus.wait(wait, since=seen)

    async def _dispatch_due(self) -> float:
        """Claim and start what is due; returns how long to sleep unless woken."""
        now = utcnow()
        free = self.concurrency - len(self._inflight)
        async with self.db.read_sessions() as session:
            ids, next_due = await deliveries.due(session, now, free, set(self._inflight))
        if ids:

            async def take(session: AsyncSession) -> list[Job]:
                return await deliveries.claim(session, ids, now, self.lease)

            jobs = await self.db.run(take)
            for job in jobs:
                task = self._sending.spawn(self._deliver(job), name=job.delivery_id)
                self._inflight[job.delivery_id] = task
                task.add_done_callback(partial(self._forget, job.delivery_id))
        if next_due is None or len(self._inflight) >= self.concurrency:
            return self.poll  # a finished request commits, and the commit wakes us
        return min(self.poll, max(0.01, (next_due - utcnow()).total_seconds()))

    def _forget(self, delivery_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(delivery_id, None)

    async def _deliver(self, job: Job) -> None:
        started = time.monotonic()
        if job.url is None or job.secret is None:
            # The workspace turned webhooks off (or is gone) since the event was recorded: the
            # delivery is dead, so it can be replayed once a URL is set again.
            await self._settle(job, status=None, error="disabled", started=started, final=True)
            log.info("webhooks disabled, delivery dropped", extra={"event_id": job.event.id})
            return
        try:
            secret = self.cipher.decrypt_text(job.secret, context=f"webhook:{job.workspace_id}")
            outgoing = webhooks.build(job.format, envelope(job.event), secret, int(time.time()))
        except Exception:  # an unreadable secret or event: retried, then dead, never stuck
            log.warning("webhook request could not be built", extra={"event_id": job.event.id})
            await self._settle(job, status=None, error="other", started=started)
            return
        if outgoing is None:
            # The blazz format has no name for this event: nothing to send, nothing to retry.
            await self._settle(job, status=None, error=None, started=started)
            return
        assert self._client is not None
        status: int | None = None
        failure: BaseException | None = None
        try:
            # Only the status matters: the receiver's body is never read.
            async with self._client.stream(
                "POST", job.url, content=outgoing.body, headers=outgoing.headers
            ) as response:
                status = response.status_code
        except httpx.HTTPError as exc:
            failure = exc
        error = classify(status, failure)
        await self._settle(job, status=status, error=error, started=started)

    async def _settle(
        self,
        job: Job,
        *,
        status: int | None,
        error: str | None,
        started: float,
        final: bool = False,
    ) -> None:
        now = utcnow()
        retry_at = None
        if error is not None and not final and job.attempts < self.max_attempts:
            retry_at = now + timedelta(seconds=self.backoff.delay(job.attempts))
        result = await self._store(_Settle(job.delivery_id, now, status, error, retry_at))
        if self.metrics is not None:
            self.metrics.observe_delivery(result, time.monotonic() - started)
        if error is not None and not final:
            log.warning(
                WagateMessage.WEBHOOK_FAILED,
                extra={
                    "event_id": job.event.id,
                    "status": status,
                    "error": error,
                    "delivery_id": job.delivery_id,
                    "attempt": job.attempts,
                    "result": result,
                },
            )

    async def _store(self, values: _Settle) -> str:
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._settles.append((values, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = self._sending.spawn(self._flush(), name="settle")
        return await done

    async def _flush(self) -> None:
        while self._settles:
            batch, self._settles = self._settles, []

            try:
                results = await self.db.run(partial(_settle_all, [v for v, _ in batch]))
            except Exception as exc:  # each waiting request sees the failure as its own
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)

    async def close(self, drain: float = 2.0) -> None:
        """Stop claiming; let requests in flight finish for up to ``drain`` seconds; the rest
        are cut short and made due again at once (they were not lost: the rows say pending)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        await self._loop_task.close()
        pending = set(self._inflight.values())
        if pending and drain > 0:
            await asyncio.wait(pending, timeout=drain)
        cut = list(self._inflight)
        await self._sending.close()
        if cut:
            with contextlib.suppress(Exception):  # a lease that is not released still ends
                await self.db.run(lambda s: deliveries.release(s, cut, utcnow()))
        if self._client is not None:
            await self._client.aclose()
