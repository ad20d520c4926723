"""Linking commands: open a link attempt (single-flight, rate-limited), cancel it, and wait for
the pairing code the engine shows a moment after it took the link."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.core.states import LINKABLE_STATUSES, AccountStatus, AttemptOutcome, LinkMethod
from wagate.db.models import Account, LinkAttempt, utcnow
from wagate.errors import EngineUnavailable, NoOpenAttempt
from wagate.logs import WagateMessage
from wagate.services import ratelimit
from wagate.services.accounts import get_account, lock_account
from wagate.services.linking import abandon_link, open_attempt, open_attempt_of
from wagate.sessions.context import Live
from wagate.sessions.manager import SessionManager

log = logging.getLogger("wagate.sessions")
S = AccountStatus


async def link(
    mgr: SessionManager, caller: Caller, account_id: str, method: LinkMethod, phone: str | None
) -> LinkAttempt:
    """Open a link attempt, or return the one already open (single-flight)."""
    mgr.check_accepting()
    async with mgr.lock(account_id):

        async def work(session: AsyncSession) -> tuple[LinkAttempt, bool]:
            now = utcnow()  # taken in the transaction, not before waiting for the writer
            account = await get_account(session, caller, account_id, lock=True)
            await _check_link_rate(mgr, session, account, now)
            return await open_attempt(session, account, method, phone, now)

        attempt, created = await mgr.run(work, retry_integrity=True)
        if not created:
            return attempt
        mgr.live_codes[account_id] = Live(attempt_id=attempt.id)
        log.info(
            WagateMessage.ATTEMPT_STARTED,
            extra={"account_id": account_id, "attempt_id": attempt.id, "method": method.value},
        )
        try:
            await mgr.call(mgr.engine.link(account_id, method, phone))
        except Exception as exc:
            await _end_after_engine_error(mgr, account_id, attempt.id)
            raise EngineUnavailable("the engine could not start the link") from exc
        return attempt


async def _check_link_rate(
    mgr: SessionManager, session: AsyncSession, account: Account, now: datetime
) -> None:
    """Only a new attempt counts: an open one is returned again for free, and an account
    that cannot link gets its conflict rather than a wait."""
    if mgr.link_rates is None or AccountStatus(account.status) not in LINKABLE_STATUSES:
        return
    if await open_attempt_of(session, account.id) is not None:
        return
    per_account, per_workspace = mgr.link_rates
    await ratelimit.check_link(
        session, account, now, per_account=per_account, per_workspace=per_workspace
    )


async def wait_pair_code(
    mgr: SessionManager, account_id: str, attempt_id: str, timeout: float
) -> None:
    """Wait (up to ``timeout``) until the engine has shown the pairing code of the attempt;
    returns early when the attempt is gone. The code comes a moment after the engine took
    the link, and the API's answer should carry it so the user need not poll."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        live = mgr.live_codes.get(account_id)
        if live is None or live.attempt_id != attempt_id or live.pair_code is not None:
            return
        await asyncio.sleep(0.01)


async def _end_after_engine_error(mgr: SessionManager, account_id: str, attempt_id: str) -> None:
    log.error("engine refused a link", extra={"account_id": account_id})

    async def work(session: AsyncSession) -> None:
        account = await lock_account(session, account_id)
        attempt = await open_attempt_of(session, account_id)
        if account is not None and attempt is not None and attempt.id == attempt_id:
            abandon_link(session, account, attempt, AttemptOutcome.FAILED, "engine_error", utcnow())

    await mgr.run(work)
    mgr.live_codes.pop(account_id, None)


async def cancel_link(mgr: SessionManager, caller: Caller, account_id: str) -> LinkAttempt:
    """Cancel the open attempt; the engine stops showing codes for it."""
    mgr.check_accepting()
    async with mgr.lock(account_id):

        async def work(session: AsyncSession) -> tuple[LinkAttempt, AccountStatus]:
            account = await get_account(session, caller, account_id, lock=True)
            attempt = await open_attempt_of(session, account_id)
            if attempt is None:
                raise NoOpenAttempt("the account has no open link attempt")
            was = AccountStatus(account.status)
            abandon_link(session, account, attempt, AttemptOutcome.CANCELLED, "cancelled", utcnow())
            return attempt, was

        attempt, was = await mgr.run(work)
        mgr.live_codes.pop(account_id, None)
        log.info(
            WagateMessage.ATTEMPT_ENDED,
            extra={"account_id": account_id, "attempt_id": attempt.id, "outcome": "cancelled"},
        )
        if was is S.LINKING:
            await mgr.call(mgr.engine.cancel_link(account_id))
        else:
            await mgr.call(mgr.engine.logout(account_id))
        return attempt
