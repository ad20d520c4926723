"""Rate limits on link attempts, per account and per workspace (DESIGN §5).

The attempts themselves are the counter: ``link_attempts.started_at`` is a sliding-window log
that every process shares and that survives restarts, so no second store (memory, Redis) can
disagree with the database. Only new attempts count: the idempotent repeat of an open attempt
never reaches the check.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.rates import Rate
from wagate.db.models import Account, LinkAttempt, Workspace
from wagate.errors import RateLimited


async def check_link(
    session: AsyncSession,
    account: Account,
    now: datetime,
    *,
    per_account: Rate,
    per_workspace: Rate,
) -> None:
    """Raise ``RateLimited`` when a new attempt for ``account`` would exceed a limit.

    The caller holds the account row; the workspace row is locked too, so two accounts of one
    workspace cannot both take its last slot.
    """
    if not per_account.unlimited:
        query = select(LinkAttempt.started_at).where(LinkAttempt.account_id == account.id)
        await _check(session, query, per_account, now, "account")
    if not per_workspace.unlimited:
        await session.execute(
            select(Workspace.id).where(Workspace.id == account.workspace_id).with_for_update()
        )
        query = (
            select(LinkAttempt.started_at)
            .join(Account, Account.id == LinkAttempt.account_id)
            .where(Account.workspace_id == account.workspace_id)
        )
        await _check(session, query, per_workspace, now, "workspace")


async def _check(
    session: AsyncSession,
    query: Select[datetime],
    rate: Rate,
    now: datetime,
    scope: str,
) -> None:
    # The ``count``-th newest attempt inside the window, if there is one: then the limit is
    # reached, and its leaving the window frees the next slot. One row, however high the limit.
    window = timedelta(seconds=rate.seconds)
    recent = query.where(LinkAttempt.started_at > now - window)
    recent = recent.order_by(LinkAttempt.started_at.desc()).offset(rate.count - 1).limit(1)
    oldest = (await session.execute(recent)).scalar_one_or_none()
    if oldest is None:
        return
    wait = (oldest + window - now).total_seconds()
    raise RateLimited(
        f"too many link attempts for this {scope}: at most {rate.count} "
        f"per {rate.seconds} s; retry later",
        retry_after=max(1, math.ceil(wait)),
        scope=scope,
    )
