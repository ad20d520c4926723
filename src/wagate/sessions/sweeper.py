"""The sweeper: closes link attempts whose engine stopped reporting on them, and settles the
outgoing messages a stopped process left ``queued``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.states import AttemptOutcome
from wagate.db.models import LinkAttempt, utcnow
from wagate.services import messages
from wagate.sessions.context import Ctx
from wagate.sessions.handlers import end
from wagate.sessions.manager import SessionManager

sweep_log = logging.getLogger("wagate.sweeper")
# A send holds its message ``queued`` for at most the engine's call timeout (15 s); one queued
# longer was left by a process that stopped. Checked this often.
STALE_QUEUED = 20.0
MESSAGE_SWEEP_EVERY = 10.0


async def sweep(mgr: SessionManager, silence: float) -> int:
    """Close the attempts this node runs whose engine stopped reporting on them for ``silence``
    seconds (another node's attempts are its own sweeper's)."""
    cutoff = utcnow() - timedelta(seconds=silence)

    async def silent(session: AsyncSession) -> list[str]:
        query = select(LinkAttempt.account_id).where(
            LinkAttempt.ended_at.is_(None), LinkAttempt.last_activity_at < cutoff
        )
        return [a for a in (await session.execute(query)).scalars() if a in mgr.held]

    closed = 0
    for account_id in await mgr.db.run(silent):

        async def act(ctx: Ctx) -> bool:
            attempt = ctx.attempt
            if attempt is None or attempt.last_activity_at >= cutoff:
                return False  # it ended or spoke up meanwhile
            end(ctx, AttemptOutcome.FAILED, "engine_silent")
            ctx.then_engine(lambda: ctx.engine.cancel_link(ctx.account.id))
            return True

        closed += bool(await mgr.transact(account_id, act))
    if closed:
        sweep_log.info("silent attempts closed", extra={"closed": closed})
    return closed


async def settle_messages(mgr: SessionManager, stale: float = STALE_QUEUED) -> int:
    """Settle the outgoing messages left ``queued`` for longer than ``stale`` seconds."""
    cutoff = utcnow() - timedelta(seconds=stale)
    settled = await mgr.db.run(lambda session: messages.settle_stale(session, cutoff))
    if settled:
        sweep_log.warning(
            "messages left queued by a stopped process settled", extra={"messages": settled}
        )
    return settled


async def sweep_forever(mgr: SessionManager, silence: float) -> None:
    """Close silent attempts every quarter of ``silence`` (at most every 30 s), and settle
    stale messages every ``MESSAGE_SWEEP_EVERY`` seconds, until cancelled."""
    await asyncio.gather(
        _repeat(max(0.05, min(silence / 4, 30.0)), lambda: sweep(mgr, silence)),
        _repeat(MESSAGE_SWEEP_EVERY, lambda: settle_messages(mgr)),
    )


async def _repeat(interval: float, step: Callable[[], Awaitable[int]]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await step()
        except Exception as exc:  # keep sweeping; the next round retries
            sweep_log.warning("sweep failed", exc_info=exc)
