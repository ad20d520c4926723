"""The sweeper: closes link attempts whose engine stopped reporting on them."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.states import AttemptOutcome
from wagate.db.models import LinkAttempt, utcnow
from wagate.sessions.context import Ctx
from wagate.sessions.handlers import end
from wagate.sessions.manager import SessionManager

sweep_log = logging.getLogger("wagate.sweeper")


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


async def sweep_forever(mgr: SessionManager, silence: float) -> None:
    interval = max(0.05, min(silence / 4, 30.0))
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(mgr, silence)
        except Exception:  # keep sweeping; the next round retries
            sweep_log.exception("sweep failed")
