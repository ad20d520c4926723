"""Keeping sessions alive: restoration at start, and the sweeper for silent attempts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate import lifecycle
from wagate.engine_events import Ctx, end
from wagate.models import Account, LinkAttempt, utcnow
from wagate.states import RESTORABLE_STATUSES, AttemptOutcome

if TYPE_CHECKING:
    from wagate.sessions import SessionManager

log = logging.getLogger("wagate.restore")
sweep_log = logging.getLogger("wagate.sweeper")
# Accounts marked ``reconnecting`` in one transaction by a restoration.
RESTORE_BATCH = 64


@contextlib.contextmanager
def _progress_bar(what: str, total: int) -> Iterator[Callable[[], None]]:
    """A transient progress bar on stderr for ``total`` steps; yields its ``advance``. With
    ``total`` 0 there is no bar and ``advance`` does nothing."""
    if not total:
        yield lambda: None
        return
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


@dataclass
class RestoreReport:
    restored: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def restorable(mgr: SessionManager) -> list[str]:
    """Ids of the accounts a start must reopen: those in a linked status, not ``stopped``."""

    async def linked_ids(session: AsyncSession) -> list[str]:
        statuses = [s.value for s in RESTORABLE_STATUSES]
        query = select(Account.id).where(Account.status.in_(statuses)).order_by(Account.id)
        return list((await session.execute(query)).scalars())

    return await mgr.db.run(linked_ids)


async def restore(
    mgr: SessionManager, ids: list[str], concurrency: int, *, progress: bool = False
) -> RestoreReport:
    """Reopen each account from its credentials, by account id: ``RESTORE_BATCH`` accounts at a
    time are marked ``reconnecting`` in one transaction, then handed to the engine, at most
    ``concurrency`` at a time; ``ids`` were read at start, before the API took its first
    command."""
    started = time.monotonic()
    report = RestoreReport()
    gate = asyncio.Semaphore(concurrency)

    with _progress_bar("restoring sessions", len(ids) if progress else 0) as advance:

        def count(reason: str | None) -> None:
            if reason is None:
                report.restored += 1
            else:
                report.failed[reason] += 1
            advance()

        async def one(account_id: str, marked: bool) -> None:
            async with gate:
                try:
                    if marked:
                        reason = await lifecycle.reconnect(mgr, account_id)
                    else:
                        reason = await lifecycle.reopen(mgr, account_id)
                except Exception:  # one account's failure must not stop the others
                    log.exception("restore of one account failed", extra={"account_id": account_id})
                    reason = "error"
            count(reason)

        async with asyncio.TaskGroup() as group:
            for first in range(0, len(ids), RESTORE_BATCH):
                chunk = ids[first : first + RESTORE_BATCH]
                try:
                    ready = await lifecycle.mark_reopening(mgr, chunk)
                except Exception:  # the batch's transaction failed: each account on its own
                    log.exception("restore batch failed, reopening its accounts one by one")
                    ready = None
                for account_id in chunk:
                    if ready is None or account_id in ready:
                        group.create_task(one(account_id, marked=ready is not None))
                    else:
                        count("not_linked")
    report.seconds = round(time.monotonic() - started, 3)
    log.info(
        "restore finished",
        extra={
            "accounts": len(ids),
            "restored": report.restored,
            "failed": dict(report.failed),
            "seconds": report.seconds,
        },
    )
    return report


async def sweep(mgr: SessionManager, silence: float) -> int:
    """Close attempts the engine stopped reporting on for ``silence`` seconds."""
    cutoff = utcnow() - timedelta(seconds=silence)

    async def silent(session: AsyncSession) -> list[str]:
        query = select(LinkAttempt.account_id).where(
            LinkAttempt.ended_at.is_(None), LinkAttempt.last_activity_at < cutoff
        )
        return list((await session.execute(query)).scalars())

    closed = 0
    for account_id in await mgr.db.run(silent):

        async def act(ctx: Ctx) -> bool:
            attempt = ctx.attempt
            if attempt is None or attempt.last_activity_at >= cutoff:
                return False  # it ended or spoke up meanwhile
            end(mgr, ctx, AttemptOutcome.FAILED, "engine_silent")
            ctx.after.append(mgr.engine_effect(lambda: mgr.engine.cancel_link(ctx.account.id)))
            return True

        closed += bool(await mgr.transact(account_id, act))
    if closed:
        sweep_log.info("silent attempts closed", extra={"closed": closed})
    return closed


async def sweep_forever(mgr: SessionManager, silence: float) -> None:
    interval = max(0.05, min(silence / 4, 30.0))
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(mgr, silence)
        except Exception:  # keep sweeping; the next round retries
            sweep_log.exception("sweep failed")
