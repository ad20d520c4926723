"""This process as a node of the cluster (DESIGN §13).

Two loops run beside the session manager. The heartbeat (every third of the lease) marks the node
alive and renews its leases on the database's clock; a lease found taken or gone closes its session
here, and a node that could not renew for two thirds of the lease closes all its sessions itself,
before any other node may take them (self-fencing). The scan (about every second) marks silent
nodes dead and takes what no live node serves and placement gives this node: a dead or leaving
node's sessions are reopened here from their stored credentials (``failover`` or ``handoff``, no
new attempt, no QR code), and its open attempts end ``interrupted``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.cluster import place
from wagate.core.states import AttemptOutcome
from wagate.core.statuses import NodeState
from wagate.core.tasks import BackgroundTasks
from wagate.db.database import db_clock
from wagate.services import cluster
from wagate.services.cluster import Orphan
from wagate.sessions import commands
from wagate.sessions.context import Ctx
from wagate.sessions.handlers import end
from wagate.sessions.manager import SessionManager

log = logging.getLogger("wagate.cluster")
# Accounts taken over in one transaction.
TAKE_BATCH = 64
# Sessions handed to a node that joined, per heartbeat: at least this many, or a tenth of those
# held, so a join moves sessions steadily, never all at once.
HANDOFF_BATCH = 16
# Sessions reopened at once when taking over another node's: 1,500 came back about 4 s sooner
# at 64 than at 32 on PostgreSQL (docs/benchmarks.md, "Cluster").
TAKEOVER_CONCURRENCY = 64


class Node:
    """Membership, lease renewal, self-fencing and takeover for one ``SessionManager``."""

    def __init__(
        self,
        manager: SessionManager,
        *,
        key_fingerprint: str | None = None,
        url: str | None = None,
        reopen_concurrency: int = TAKEOVER_CONCURRENCY,
        scan_every: float = 1.0,
    ) -> None:
        self.mgr = manager
        self.name = manager.node
        self.key_fingerprint = key_fingerprint
        self.url = url
        self.terms = manager.runtime.terms
        self.scan_every = min(scan_every, self.terms.renew_every)
        self._gate = asyncio.Semaphore(reopen_concurrency)
        self._tasks = BackgroundTasks("cluster")
        self._reopens = BackgroundTasks("cluster-reopen")
        # When the last renewal that succeeded was sent (monotonic): the leases last that long.
        self._renewed_at = time.monotonic()
        self._fenced = False
        self._closed = False

    async def join(self) -> None:
        """Register this node as live (before restoration at start). Nodes of this host whose
        process is gone (killed, crashed) are dead now: their leases are released at once, so
        a restart restores without waiting for them to expire."""
        host = socket.gethostname()

        async def work(session: AsyncSession) -> list[str]:
            now = await db_clock(session)
            await cluster.join(
                session, self.name, now, host, os.getpid(), self.key_fingerprint, self.url
            )
            gone = [
                name
                for name, pid in (await cluster.neighbours(session, self.name, host)).items()
                if not _running(pid)
            ]
            if gone:
                await cluster.forget(session, gone)
            return gone

        sent = time.monotonic()
        gone = await self.mgr.db.run(work)
        self._renewed_at = sent
        log.info("node joined", extra={"node": self.name, "gone": gone})

    def start(self) -> None:
        """Heartbeat and renew from now on."""
        self._tasks.spawn(self._every(self.terms.renew_every, self.beat), name="heartbeat")

    def start_scanning(self) -> None:
        """Take what no live node serves from now on: once restoration at start has finished,
        so the two never reopen the same account at once."""
        if not self._closed:
            self._tasks.spawn(self._every(self.scan_every, self.scan), name="takeover")

    async def _every(self, seconds: float, step: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception:  # the database may be away: try again next round
                log.warning("cluster round failed", exc_info=True, extra={"node": self.name})
            self._fence_if_stale()

    # -- heartbeat and renewal -------------------------------------------------------------------

    async def beat(self) -> None:
        """Heartbeat and renew; then let go what this node no longer holds, and give back what
        the database says it holds but nothing here serves."""

        async def work(session: AsyncSession) -> tuple[dict[str, int], dict[str, int]]:
            now = await db_clock(session)
            await cluster.heartbeat(session, self.name, now)
            still = await cluster.renew(session, self.name, now, self.terms)
            # Nodes that have run a whole lease take a share; a node that just started, and may
            # fail again at once, does not.
            settled = await cluster.live_nodes(session, now, self.terms, self.terms.seconds)
            counts = await cluster.held_counts(session)
            return still, {node: counts.get(node, 0) for node in settled}

        sent = time.monotonic()
        still, settled = await self.mgr.db.run(work)
        self._renewed_at = sent
        self._fenced = False
        for account_id, epoch in list(self.mgr.held.items()):
            if still.get(account_id) != epoch:
                await self.mgr.recheck(account_id)
        for account_id in still.keys() - self.mgr.held.keys():
            await self.mgr.give_back(account_id)
        await self._rebalance({**settled, self.name: len(self.mgr.held)})

    async def _rebalance(self, counts: dict[str, int]) -> int:
        """Past its fair share of the sessions the settled nodes hold (one joined), hand the
        excess over to the nodes placement gives them: each is closed here and its lease
        released, and that node reopens it (``handoff``). A little over the share is kept, so
        sessions linked through one node or another do not move back and forth."""
        held = len(self.mgr.held)
        share = -(-sum(counts.values()) // len(counts))
        excess = held - share - max(1, share // 20)
        if excess <= 0:
            return 0
        # Open attempts never move (their codes would die with the session here).
        showing = self.mgr.live_codes
        moving = [a for a in self.mgr.held if a not in showing and place(a, counts) != self.name]
        limit = min(excess, max(HANDOFF_BATCH, held // 10))
        moved = 0
        for account_id in moving[:limit]:
            moved += await self.mgr.hand_off(account_id)
        if moved:
            log.info("sessions handed over", extra={"node": self.name, "accounts": moved})
        return moved

    def _fence_if_stale(self) -> None:
        """No renewal for two thirds of the lease: the others may soon take these sessions, so
        close them here first (nothing is written: the database may be out of reach)."""
        if self._fenced or time.monotonic() - self._renewed_at < self.terms.fence_after:
            return
        self._fenced = True
        count = self.mgr.let_go_all()
        log.error(
            "leases not renewed in time, sessions closed here",
            extra={"node": self.name, "sessions": count},
        )

    # -- takeover -------------------------------------------------------------------------------

    async def scan(self) -> int:
        """Mark silent nodes dead, then take what no live node serves and placement gives this
        node; returns how many accounts it took."""
        if self._fenced or self._closed:
            return 0

        async def work(session: AsyncSession) -> list[Orphan]:
            now = await db_clock(session)
            dead = await cluster.bury(session, now, self.terms)
            if dead:
                log.warning("nodes silent past their leases marked dead", extra={"nodes": dead})
            live = set(await cluster.live_nodes(session, now, self.terms)) | {self.name}
            found = await cluster.orphans(session, self.name, now, self.terms)
            return [o for o in found if place(o.account_id, live) == self.name]

        mine = await self.mgr.db.run(work)
        attempts = [o for o in mine if o.open_attempt]
        if attempts:
            await self._interrupt(attempts)
        taken = 0
        for reason in ("handoff", "failover"):
            ids = [o.account_id for o in mine if not o.open_attempt and o.reason == reason]
            for first in range(0, len(ids), TAKE_BATCH):
                taken += await self._take(ids[first : first + TAKE_BATCH], reason)
        return taken + len(attempts)

    async def _interrupt(self, orphans: list[Orphan]) -> None:
        """A dead node's open attempts: nobody shows their codes any more."""
        for orphan in orphans:

            async def act(ctx: Ctx) -> None:
                if ctx.attempt is not None and await ctx.claim():
                    end(ctx, AttemptOutcome.INTERRUPTED, "node_lost")

            await self.mgr.transact(orphan.account_id, act, fence=False)

    async def _take(self, account_ids: list[str], reason: str) -> int:
        ready = await commands.mark_reopening(self.mgr, account_ids, reason)
        metrics = self.mgr.metrics
        for account_id in sorted(ready):
            if metrics is not None:
                metrics.lease_takeovers.labels(reason=reason).inc()
            self._reopens.spawn(self._reconnect(account_id), name=f"reopen:{account_id}")
        if ready:
            log.info(
                "sessions taken over",
                extra={"node": self.name, "reason": reason, "accounts": len(ready)},
            )
        return len(ready)

    async def _reconnect(self, account_id: str) -> None:
        async with self._gate:
            await commands.reconnect(self.mgr, account_id)

    # -- leaving --------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the loops and say this node is leaving: no account is placed on it any more."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.close()
        await self._reopens.close()
        try:
            await self.mgr.db.run(lambda s: cluster.set_state(s, self.name, NodeState.LEAVING))
        except Exception:  # the database is away: leaving still goes on
            log.warning("node not marked leaving", exc_info=True, extra={"node": self.name})

    async def leave(self) -> None:
        """Once the sessions are closed: release every lease, so the others take them at once
        (``handoff``), and record that this node is gone."""

        async def work(session: AsyncSession) -> int:
            released = await cluster.release_all(session, self.name)
            await cluster.set_state(session, self.name, NodeState.DEAD)
            return released

        try:
            released = await self.mgr.db.run(work)
        except Exception:  # the database is away: the others take the leases once they expire
            log.warning("leases not released on leaving", exc_info=True, extra={"node": self.name})
            return
        finally:
            self.mgr.held.clear()
        log.info("node left", extra={"node": self.name, "released": released})


def _running(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (one of another user counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
