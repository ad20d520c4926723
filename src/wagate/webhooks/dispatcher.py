"""The webhook dispatcher: delivers the outbox's deliveries at least once, in ``seq`` order per
account, with retries, backoff and a dead letter (DESIGN §7).

Its work is the ``webhook_deliveries`` table. Deliveries this process's transactions claimed at
birth (see ``wagate.db.outbox``) are handed to it when they commit and sent at once; those that
queued behind others are claimed by the lane of their account when it settles; a full round over
every account's queue runs on a timer (retries coming due, changes made by other processes such
as the CLI) and after a replay. Accounts are served concurrently, at most ``concurrency``
requests at once (``WAGATE_WEBHOOK_CONCURRENCY``), one at a time per account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.backoff import Backoff
from wagate.core.crypto import Cipher
from wagate.core.tasks import BackgroundTasks
from wagate.db.bus import Wakeup
from wagate.db.database import Commit, Database
from wagate.db.models import utcnow
from wagate.db.notes import Job
from wagate.logs import WagateMessage
from wagate.metrics import Metrics
from wagate.webhooks import queue as deliveries
from wagate.webhooks import requests as webhooks
from wagate.webhooks.guard import AddressBlocked, Guard

log = logging.getLogger("wagate.webhooks")
# The most of a receiver's answer read back (to keep its connection alive), in bytes.
MAX_READ = 64 * 1024
# Results nobody waits on are committed this much later, together with the others that came in
# meanwhile: one transaction for many deliveries when they trickle in.
SETTLE_DELAY = 0.02
# last_error of a delivery whose URL leads only to addresses webhooks are not sent to (guard.py);
# such a delivery is dead at once: it can be replayed once the URL is fixed.
BLOCKED = "blocked_address"


def classify(status: int | None, exc: BaseException | None) -> str | None:
    """The failure class logged and stored in ``last_error``; None for a 2xx answer."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, AddressBlocked):
        return BLOCKED
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


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How deliveries are retried and how many are in flight at once (DESIGN §7, §10)."""

    max_attempts: int = 15  # then the delivery is dead
    backoff: Backoff = Backoff(min=1.0, max=3600.0)
    concurrency: int = 64  # requests in flight at once, one per account at a time


class Dispatcher:
    """Sends due deliveries until ``close()``; every state it keeps lives in the database.

    Each account with something to send gets a *lane*: a task that sends its deliveries one
    after another from the account's inbox. A lane's result is committed together with other
    lanes' results (a group commit: one transaction per batch, which the single SQLite writer
    needs); when more deliveries of the account queued behind, that same transaction claims them
    (up to ``depth``), so a busy account never waits for a dispatch round.
    """

    def __init__(
        self,
        db: Database,
        cipher: Cipher,
        policy: DeliveryPolicy = DeliveryPolicy(),
        metrics: Metrics | None = None,
        *,
        guard: Guard,
        timeout: float = 10.0,
        poll: float = 1.0,
        depth: int = 16,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.metrics = metrics
        self.guard = guard
        self.max_attempts = policy.max_attempts
        self.backoff = policy.backoff
        self.concurrency = policy.concurrency
        # Deliveries of one account claimed at once and sent one after another.
        self.depth = depth
        self.poll = poll
        self.timeout = timeout
        # A claimed row is due again after this, should the process die mid-request.
        self.lease = timeout + 5.0
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._client: aiohttp.ClientSession | None = None
        self._loop_task = BackgroundTasks("webhooks")
        self._sending = BackgroundTasks("webhook-deliveries")
        self._lanes: dict[str | None, asyncio.Task[None]] = {}
        # Claimed deliveries not yet sent, per account, in order; accounts waiting for a lane.
        self._inbox: dict[str | None, deque[Job]] = {}
        self._waiting: dict[str | None, None] = {}  # in arrival order
        # Claimed and not yet settled: released at shutdown so they are due again at once.
        self._claimed: set[str] = set()
        # Accounts whose new deliveries queued behind pending ones: with a lane, its next settle
        # claims them; without one, their head is claimed next. A full round is owed after a
        # replay (and at start).
        self._arrived: set[str] = set()
        self._births: set[str] = set()
        self._sweep = True
        # Wakes the dispatch loop: births, replays, ended lanes.
        self._wakeup = Wakeup()
        self._settles: list[tuple[deliveries.Outcome, asyncio.Future[list[Job]], bool]] = []
        self._urgent = asyncio.Event()
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
            connector=aiohttp.TCPConnector(limit=self.concurrency, resolver=self.guard.resolver()),
            skip_auto_headers=("User-Agent",),
        )
        self.db.listen(self._committed)
        self.db.claim_at_birth(self.lease)
        self._loop_task.spawn(self._run(), name="dispatch")

    def _committed(self, commit: Commit) -> None:
        """Take the deliveries a commit claimed at birth; note the accounts whose deliveries
        queued behind others; a replay (``deliveries.QUEUE``) asks for a full round. Commits of
        sessions that could not claim at birth treat every account they wrote to as queued."""
        tx = commit.notes
        born = tx.born if tx.birth_lease is not None else None
        queued = tx.queued if born is not None else set(commit.topics)
        woken = False
        if deliveries.QUEUE in commit.topics:
            self._sweep = woken = True
            queued = queued - {deliveries.QUEUE}
        for job in born or ():
            self._claimed.add(job.delivery_id)
            if self._stopping:
                self._unsent.append(job.delivery_id)
            else:
                woken = self._give(job.account_id, [job]) or woken
        for account_id in queued:
            if account_id in self._lanes:
                self._arrived.add(account_id)
            else:
                self._births.add(account_id)
                woken = True
        if woken:
            self._wakeup.notify()

    def _give(self, account_id: str | None, jobs: list[Job]) -> bool:
        """Put claimed jobs in the account's inbox and start its lane if it has none; True when
        it has to wait for room (the loop starts it)."""
        inbox = self._inbox.setdefault(account_id, deque())
        inbox.extend(jobs)
        if account_id in self._lanes or account_id in self._waiting:
            return False
        if len(self._lanes) < self.concurrency:
            self._start_lane(account_id)
            return False
        self._waiting[account_id] = None
        return True

    async def _run(self) -> None:
        next_round = 0.0  # monotonic time of the next full round
        while not self._stopping:
            seen = self._wakeup.generation
            while self._waiting and len(self._lanes) < self.concurrency:
                account_id = next(iter(self._waiting))
                del self._waiting[account_id]
                self._start_lane(account_id)
            if len(self._lanes) >= self.concurrency:
                # Full: the next round is worth running only once a lane has ended.
                await self._wakeup.wait(self.poll, since=seen)
                continue
            try:
                if self._births:
                    await self._start_births()
                if self._sweep or time.monotonic() >= next_round:
                    self._sweep = False
                    next_round = time.monotonic() + await self._dispatch_due()
            except Exception:  # the database may be briefly away; the timer tries again
                log.warning("webhook dispatch round failed", exc_info=True)
                next_round = time.monotonic() + self.poll
            await self._wakeup.wait(max(0.0, next_round - time.monotonic()), since=seen)

    def _free(self) -> int:
        return self.concurrency - len(self._lanes) - len(self._waiting)

    async def _start_births(self) -> None:
        """Claim the oldest due delivery of accounts whose deliveries queued while they had no
        lane here, and start their lanes; the first settle claims what is behind it."""
        waiting, self._births = self._births, set()
        accounts: list[str] = []
        for account_id in waiting:
            if account_id in self._lanes or account_id in self._inbox:
                self._arrived.add(account_id)  # its lane's next settle looks
            elif len(accounts) < self._free():
                accounts.append(account_id)
            else:  # no room: once a lane ends
                self._births.add(account_id)
        if not accounts:
            return
        now = utcnow()

        async def take(session: AsyncSession) -> list[Job]:
            heads = await deliveries.due_prefixes(session, accounts, now, 1)
            return await deliveries.claim(session, heads, now, self.lease) if heads else []

        try:
            jobs = await self.db.run(take)
        except Exception:
            self._births.update(accounts)  # tried again by the next round
            raise
        for job in jobs:
            self._take_head(job)

    async def _dispatch_due(self) -> float:
        """Claim the heads due for accounts without a lane and start their lanes; returns how
        long to sleep unless woken. The first settle of each claims what is behind it."""
        now = utcnow()
        busy = set(self._lanes) | set(self._inbox)
        async with self.db.read_sessions() as session:
            ids, next_due = await deliveries.due(session, now, self._free(), busy)
        if ids:

            async def take(session: AsyncSession) -> list[Job]:
                return await deliveries.claim(session, ids, now, self.lease)

            for job in await self.db.run(take):
                if job.account_id in self._lanes or job.account_id in self._inbox:
                    # Two heads of rows without an account: the second waits.
                    await self.db.run(partial(_release, [job.delivery_id]))
                    continue
                self._take_head(job)
        if next_due is None:
            return self.poll  # a commit wakes us
        return min(self.poll, max(0.01, (next_due - utcnow()).total_seconds()))

    def _take_head(self, job: Job) -> None:
        """A claimed head of an account's queue: to the account's lane, whose first settle
        looks for what queued behind it."""
        self._claimed.add(job.delivery_id)
        if job.account_id is not None:
            self._arrived.add(job.account_id)
        self._give(job.account_id, [job])

    def _start_lane(self, account_id: str | None) -> None:
        task = self._sending.spawn(self._lane(account_id), name=f"lane:{account_id}")
        self._lanes[account_id] = task
        task.add_done_callback(partial(self._end_lane, account_id))

    def _end_lane(self, account_id: str | None, task: asyncio.Task[None]) -> None:
        if self._lanes.get(account_id) is not task:
            return
        del self._lanes[account_id]
        if self._inbox.get(account_id):  # handed over after the lane last looked
            if not self._stopping:
                self._give(account_id, [])
        else:
            self._inbox.pop(account_id, None)
            if account_id in self._arrived:  # queued after the lane last looked
                self._arrived.discard(account_id)
                self._births.add(account_id)
        self._wakeup.notify()

    async def _lane(self, account_id: str | None) -> None:
        """Send the account's deliveries in order until none is left (or one failed).

        The inbox holds the claimed deliveries; the next is sent as soon as the one before it
        was answered, and results are committed in the background. Were the process to die
        first, the unsettled ones are sent again in order when their lease ends: at least once,
        never out of order. A claim whose lease would end before its request could finish is
        not sent: it and those behind it are given back, to be claimed again in order."""
        queue = self._inbox.setdefault(account_id, deque())
        try:
            while queue and not self._stopping:
                job = queue.popleft()
                if (job.until - utcnow()).total_seconds() < self.timeout:
                    self._unsent.append(job.delivery_id)
                    self._unsent.extend(j.delivery_id for j in queue)
                    queue.clear()
                    self._store(None, wants_more=False)
                    break
                outcome = await self._deliver(job)
                if outcome.result == "failed" and queue:
                    # The rest wait behind the one that failed: they give their attempt back.
                    self._unsent.extend(j.delivery_id for j in queue)
                    queue.clear()
                # More is claimed only when deliveries queued behind since the lane last looked.
                more = not queue and outcome.result != "failed" and self._looks(account_id)
                stored = self._store(outcome, wants_more=more)
                if more:
                    queue.extend(await stored)
        finally:
            if queue and self._stopping:  # released at close with their attempts given back
                self._unsent.extend(j.delivery_id for j in queue)
                queue.clear()

    def _looks(self, account_id: str | None) -> bool:
        """Whether the lane's next settle should claim more: deliveries of the account queued
        behind since it last looked (rows without an account always look)."""
        if account_id is None:
            return True
        if account_id in self._arrived:
            self._arrived.discard(account_id)
            return True
        return False

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
        if self.guard.refuses_literal(job.url):
            return self._outcome(job, status=None, error=BLOCKED, started=started, final=True)
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
        return self._outcome(
            job, status=status, error=error, started=started, final=error == BLOCKED
        )

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

    def _store(
        self, outcome: deliveries.Outcome | None, *, wants_more: bool
    ) -> asyncio.Future[list[Job]]:
        """Queue the result for the next group commit; the future gives the account's next
        deliveries when ``wants_more`` (claimed in that commit), else nothing. A result nobody
        waits on is committed a moment later with others; ``None`` only gives back unsent
        claims."""
        done: asyncio.Future[list[Job]] = asyncio.get_running_loop().create_future()
        if not wants_more:
            # Nobody waits on it; a failed commit leaves the row leased, sent again later.
            done.add_done_callback(_quiet)
        else:
            self._urgent.set()
        if outcome is not None:
            self._settles.append((outcome, done, wants_more))
        else:
            done.set_result([])
        if self._flusher is None or self._flusher.done():
            self._flusher = self._sending.spawn(self._flush(), name="settle")
        return done

    async def _flush(self, delay: float = SETTLE_DELAY) -> None:
        while self._settles or self._unsent:
            if delay > 0 and not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), delay)
            self._urgent.clear()
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
                looking={o.account_id for o, _, wants in batch if wants},
            )
            try:
                jobs = await self.db.run(work, urgent=True)
            except Exception as exc:  # each waiting lane sees the failure as its own
                log.warning("webhook results not stored; sent again when their lease ends")
                self._unsent.extend(unsent)
                for _, done, _ in batch:
                    if not done.done():
                        done.set_exception(exc)
                return  # the next result tries again
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
        """Stop claiming; let requests in flight finish for up to ``drain`` seconds and store
        their results; the rest are cut short and made due again at once (they were not lost:
        the rows say pending)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self.db.unlisten(self._committed)
        self.db.claim_at_birth(None)
        await self._loop_task.close()
        pending = set(self._lanes.values())
        if pending and drain > 0:
            await asyncio.wait(pending, timeout=drain)
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flusher), drain)
        await self._sending.close()
        for inbox in self._inbox.values():  # handed over, never sent
            self._unsent.extend(j.delivery_id for j in inbox)
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
