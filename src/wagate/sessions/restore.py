"""Restoration at start: every linked account reopened from its stored credentials, by id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import Progress
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.cluster import place
from wagate.core.states import RESTORABLE_STATUSES
from wagate.db.database import db_clock
from wagate.services import cluster
from wagate.sessions import commands
from wagate.sessions.manager import SessionManager

log = logging.getLogger("wagate.restore")
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
    """Ids of the accounts a start must reopen: those in a linked status (not ``stopped``) that
    no live node serves and that placement gives this node (the other live nodes take theirs);
    with no other node, all of them."""
    node, terms = mgr.node, mgr.runtime.terms

    async def linked_ids(session: AsyncSession) -> list[str]:
        now = await db_clock(session)
        live = set(await cluster.live_nodes(session, now, terms)) | {node}
        free = await cluster.unserved(session, node, now, terms, RESTORABLE_STATUSES)
        return [account_id for account_id in free if place(account_id, live) == node]

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
                        reason = await commands.reconnect(mgr, account_id)
                    else:
                        reason = await commands.reopen(mgr, account_id)
                except Exception:  # one account's failure must not stop the others
                    log.exception("restore of one account failed", extra={"account_id": account_id})
                    reason = "error"
            count(reason)

        async with asyncio.TaskGroup() as group:
            for first in range(0, len(ids), RESTORE_BATCH):
                chunk = ids[first : first + RESTORE_BATCH]
                try:
                    ready = await commands.mark_reopening(mgr, chunk)
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
