"""Rate limits on link attempts, per account and per workspace (DESIGN §5).

The database is the counter, a sliding-window log that every process shares and that survives
restarts, so no second store (memory, Redis) can disagree with it: per account,
``link_attempts.started_at``; per workspace, ``link_starts``, one row per attempt started, which
stays when its account is deleted (deleting accounts gives a workspace no attempts back). Only new
attempts count: the idempotent repeat of an open attempt never reaches the check.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.rates import Rate
from wagate.db.models import Account, LinkAttempt, LinkStart, Workspace
from wagate.errors import RateLimited


async def check_link(
    session: AsyncSession,
    account: Account,
    now: datetime,
    *,
    per_account: Rate,
    per_workspace: Rate,
) -> None:
    """Raise ``RateLimited`` when a new attempt for ``account`` would exceed a limit; else count
    the attempt against its workspace.

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
        query = select(LinkStart.started_at).where(LinkStart.workspace_id == account.workspace_id)
        await _check(session, query, per_workspace, now, "workspace")
        # What has left the window can never count again.
        window = timedelta(seconds=per_workspace.seconds)
        await session.execute(
            delete(LinkStart).where(
                LinkStart.workspace_id == account.workspace_id,
                LinkStart.started_at <= now - window,
            )
        )
    session.add(LinkStart(workspace_id=account.workspace_id, started_at=now))


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
    started = query.selected_columns[0]
    recent = query.where(started > now - window)
    recent = recent.order_by(started.desc()).offset(rate.count - 1).limit(1)
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
