"""The webhook dispatcher: delivers the outbox's deliveries at least once, in ``seq`` order per
account, with retries, backoff and a dead letter (DESIGN §7).

It reads its work from ``webhook_deliveries`` only; the bus wakes it after a commit and a timer
covers the rest (retries coming due, changes made by other processes such as the CLI). Accounts
are served concurrently, at most ``concurrency`` requests at once (``WAGATE_WEBHOOK_CONCURRENCY``),
one at a time per account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection
from datetime import timedelta
from functools import partial

import aiohttp
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
from wagate.tasks import BackgroundTasks

log = logging.getLogger("wagate.webhooks")
# The most of a receiver's answer read back (to keep its connection alive), in bytes.
MAX_READ = 64 * 1024


def classify(status: int | None, exc: BaseException | None) -> str | None:
    """The failure class logged and stored in ``last_error``; None for a 2xx answer."""
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"
    if exc is not None or status is None:
        return "other"
    if 200 <= status < 300:
        return None
    if 400 <= status < 500:
        return "http_4xx"
    return "http_5xx" if 500 <= status < 600 else "other"


class Dispatcher:
    """Sends due deliveries until ``close()``; every state it keeps lives in the database.

    Each account with something to send gets a *lane*: a task that sends its deliveries one
    after another. A lane's result is committed together with other lanes' results (a group
    commit: one transaction per batch, which the single SQLite writer needs), and the same
    transaction claims the account's next due deliveries (up to ``depth``), so a busy account
    never waits for a dispatch round. The round only starts lanes for accounts that have none.
    """

    def __init__(
        self,
        db: Database,
        bus: Wakeup,
        cipher: Cipher,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        concurrency: int | None = None,
        timeout: float = 10.0,
        poll: float = 1.0,
        depth: int = 16,
    ) -> None:
        self.db = db
        self.bus = bus
        self.cipher = cipher
        self.metrics = metrics
        self.max_attempts = settings.webhook_max_attempts
        self.backoff = Backoff(
            min=settings.webhook_retry_min_seconds, max=settings.webhook_retry_max_seconds
        )
        self.concurrency = concurrency or settings.webhook_concurrency
        # Deliveries of one account claimed at once and sent one after another.
        self.depth = depth
        self.poll = poll
        # A claimed row is due again after this, should the process die mid-request.
        self.lease = timeout + 5.0
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._client: aiohttp.ClientSession | None = None
        self._loop_task = BackgroundTasks("webhooks")
        self._sending = BackgroundTasks("webhook-deliveries")
        self._lanes: dict[str | None, asyncio.Task[None]] = {}
        # Claimed and not yet settled: released at shutdown so they are due again at once.
        self._claimed: set[str] = set()
        # Wakes the dispatch round: commits for accounts without a lane, ended lanes.
        self._wakeup = Wakeup()
        bus.listen(self._on_commit)
        self._settles: list[tuple[deliveries.Outcome, asyncio.Future[list[Job]], bool]] = []
        # Claimed, never sent: their attempt is given back with the next commit.
        self._unsent: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False

    async def start(self) -> None:
        # One kept-alive connection per lane: a lane never pays for a new connection. (aiohttp
        # costs a fifth of the CPU per request of httpx, measured in docs/benchmarks.md.)
        self._client = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            skip_auto_headers=("User-Agent",),
        )
        self._loop_task.spawn(self._run(), name="dispatch")

    def _on_commit(self, topics: Collection[str] | None) -> None:
        """Deliveries become due through commits that name a topic: an account's events, or
        ``deliveries.QUEUE`` for replays. A commit for an account with a lane needs no round: the
        lane claims the account's next delivery when it settles (and an ended lane wakes the
        round). Commits with no topic (this dispatcher's own settles) wake nothing."""
        if topics is None or any(topic not in self._lanes for topic in topics):
            self._wakeup.notify()

    async def _run(self) -> None:
        while not self._stopping:
            seen = self._wakeup.generation
            if len(self._lanes) >= self.concurrency:
                # Full: the next round is worth running only once a lane has ended.
                await self._wakeup.wait(self.poll, since=seen)
                continue
            try:
                wait = await self._dispatch_due()
            except Exception:  # the database may be briefly away; the timer tries again
                log.warning("webhook dispatch round failed", exc_info=True)
                wait = self.poll
            await self._wakeup.wait(wait, since=seen)

    async def _dispatch_due(self) -> float:
        """Claim what is due for accounts without a lane and start their lanes; returns how
        long to sleep unless woken."""
        now = utcnow()
        free = self.concurrency - len(self._lanes)
        async with self.db.read_sessions() as session:
            ids, next_due = await deliveries.due(session, now, free, set(self._lanes))
        if ids:

            async def take(session: AsyncSession) -> list[Job]:
                return await deliveries.claim(session, ids, now, self.lease)

            for job in await self.db.run(take):
                self._claimed.add(job.delivery_id)
                if job.account_id in self._lanes:  # two heads of rows without an account
                    await self.db.run(partial(_release, [job.delivery_id]))
                    self._claimed.discard(job.delivery_id)
                    continue
                task = self._sending.spawn(self._lane(job), name=job.delivery_id)
                self._lanes[job.account_id] = task
                task.add_done_callback(partial(self._end_lane, job.account_id))
        if next_due is None:
            return self.poll  # a commit wakes us
        return min(self.poll, max(0.01, (next_due - utcnow()).total_seconds()))

    def _end_lane(self, account_id: str | None, task: asyncio.Task[None]) -> None:
        if self._lanes.get(account_id) is task:
            del self._lanes[account_id]
            self._wakeup.notify()

    async def _lane(self, job: Job) -> None:
        """Send the account's deliveries in order until none is due (or one failed).

        The lane holds up to ``depth`` claimed deliveries and sends the next as soon as the one
        before it was answered; results are committed in the background. Were the process to die
        first, the unsettled ones are sent again in order when their lease ends: at least once,
        never out of order."""
        queue = deque([job])
        try:
            while queue and not self._stopping:
                outcome = await self._deliver(queue.popleft())
                if outcome.result == "failed" and queue:
                    # The rest wait behind the one that failed: they give their attempt back.
                    self._unsent.extend(j.delivery_id for j in queue)
                    queue.clear()
                stored = self._store(outcome, wants_more=not queue and outcome.result != "failed")
                if not queue:
                    queue.extend(await stored)
        finally:
            if queue:  # stopping: released at close with their attempts given back
                self._unsent.extend(j.delivery_id for j in queue)

    async def _deliver(self, job: Job) -> deliveries.Outcome:
        """One attempt at one delivery."""
        started = time.monotonic()
        if job.url is None or job.secret is None:
            # The workspace turned webhooks off (or is gone) since the event was recorded: the
            # delivery is dead, so it can be replayed once a URL is set again.
            log.info("webhooks disabled, delivery dropped", extra={"event_id": job.event["id"]})
            return self._outcome(job, status=None, error="disabled", started=started, final=True)
        try:
            secret = self.cipher.decrypt_text(job.secret, context=f"webhook:{job.workspace_id}")
            outgoing = webhooks.build(job.format, job.event, secret, int(time.time()))
        except Exception:  # an unreadable secret or event: retried, then dead, never stuck
            log.warning("webhook request could not be built", extra={"event_id": job.event["id"]})
            return self._outcome(job, status=None, error="other", started=started)
        if outgoing is None:
            # The blazz format has no name for this event: nothing to send, nothing to retry.
            return self._outcome(job, status=None, error=None, started=started)
        assert self._client is not None
        status: int | None = None
        failure: BaseException | None = None
        try:
            async with self._client.post(
                job.url, data=outgoing.body, headers=outgoing.headers, allow_redirects=False
            ) as response:
                status = response.status
                # Only the status matters. A short body is read so the connection is kept for
                # the next request; a long or unsized one is left, and the connection closed.
                length = response.content_length
                if length is not None and length <= MAX_READ:
                    await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            failure = exc
        error = classify(status, failure)
        return self._outcome(job, status=status, error=error, started=started)

    def _outcome(
        self,
        job: Job,
        *,
        status: int | None,
        error: str | None,
        started: float,
        final: bool = False,
    ) -> deliveries.Outcome:
        now = utcnow()
        retry_at = None
        if error is not None and not final and job.attempts < self.max_attempts:
            retry_at = now + timedelta(seconds=self.backoff.delay(job.attempts))
        outcome = deliveries.Outcome(job.delivery_id, job.account_id, now, status, error, retry_at)
        if self.metrics is not None:
            self.metrics.observe_delivery(outcome.result, time.monotonic() - started)
        if error is not None and not final:
            log.warning(
                WagateMessage.WEBHOOK_FAILED,
                extra={
                    "event_id": job.event["id"],
                    "status": status,
                    "error": error,
                    "delivery_id": job.delivery_id,
                    "attempt": job.attempts,
                    "result": outcome.result,
                },
            )
        return outcome

    def _store(self, outcome: deliveries.Outcome, *, wants_more: bool) -> asyncio.Future[list[Job]]:
        """Queue the result for the next group commit; the future gives the account's next
        deliveries when ``wants_more`` (claimed in that commit), else nothing."""
        done: asyncio.Future[list[Job]] = asyncio.get_running_loop().create_future()
        if not wants_more:
            # Nobody waits on it; a failed commit leaves the row leased, sent again later.
            done.add_done_callback(_quiet)
        self._settles.append((outcome, done, wants_more))
        if self._flusher is None or self._flusher.done():
            self._flusher = self._sending.spawn(self._flush(), name="settle")
        return done

    async def _flush(self) -> None:
        while self._settles:
            batch, self._settles = self._settles, []
            unsent, self._unsent = self._unsent, []
            outcomes = [outcome for outcome, _, _ in batch]
            lease = None if self._stopping else self.lease
            work = partial(
                deliveries.settle,
                outcomes=outcomes,
                lease=lease,
                depth=self.depth,
                unsent=unsent,
            )
            try:
                jobs = await self.db.run(work, urgent=True)
            except Exception as exc:  # each waiting lane sees the failure as its own
                log.warning("webhook results not stored; sent again when their lease ends")
                self._unsent.extend(unsent)
                for _, done, _ in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            self._claimed.difference_update(o.delivery_id for o in outcomes)
            self._claimed.difference_update(unsent)
            self._claimed.update(job.delivery_id for job in jobs)
            following: dict[str | None, list[Job]] = {}
            for job in jobs:
                following.setdefault(job.account_id, []).append(job)
            for outcome, done, wants_more in batch:
                more = following.pop(outcome.account_id, []) if wants_more else []
                if done.done():  # the lane is gone (shutdown): the claims are given back
                    self._unsent.extend(j.delivery_id for j in more)
                else:
                    done.set_result(more)
            for left in following.values():  # claimed for a lane that did not ask
                self._unsent.extend(j.delivery_id for j in left)

    async def close(self, drain: float = 2.0) -> None:
        """Stop claiming; let requests in flight finish for up to ``drain`` seconds; the rest
        are cut short and made due again at once (they were not lost: the rows say pending)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self.bus.unlisten(self._on_commit)
        await self._loop_task.close()
        pending = set(self._lanes.values())
        if pending and drain > 0:
            await asyncio.wait(pending, timeout=drain)
        await self._sending.close()
        unsent = set(self._unsent)
        cut = list(self._claimed - unsent)
        with contextlib.suppress(Exception):  # a lease that is not released still ends
            if cut:
                await self.db.run(partial(_release, cut))
            if unsent:
                await self.db.run(partial(_release, list(unsent & self._claimed), refund=True))
        if self._client is not None:
            await self._client.close()


async def _release(ids: list[str], session: AsyncSession, *, refund: bool = False) -> None:
    await deliveries.release(session, ids, utcnow(), refund=refund)


def _quiet(done: asyncio.Future[list[Job]]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: a failed commit was logged where it happened
