"""Rate limits on link attempts, per account and per workspace (DESIGN §5).

The attempts themselves are the counter: ``link_attempts.started_at`` is a sliding-window log
that every process shares and that survives restarts, so no second store (memory, Redis) can
disagree with the database. Only new attempts count: the idempotent repeat of an open attempt
never reaches the check.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.errors import RateLimited
from wagate.models import Account, LinkAttempt, Workspace

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` attempts per ``seconds``; ``count == 0`` means no limit."""

    count: int
    seconds: int

    @property
    def unlimited(self) -> bool:
        return self.count == 0

    def __str__(self) -> str:
        return "unlimited" if self.unlimited else f"{self.count}/{self.seconds}s"


UNLIMITED = Rate(0, 1)


def parse_rate(value: object) -> Rate:
    """``10/h``, ``100/hour``, ``5/min``, ``30/s``, ``20/15min``, ``1/day``; ``off`` or ``0`` for
    no limit. Raises ``ValueError`` with the accepted forms."""
    if isinstance(value, Rate):
        return value
    text = str(value).strip().lower()
    if text in ("off", "none", "unlimited", "0"):
        return UNLIMITED
    match = _RATE.match(text)
    unit = _unit(match.group(3)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"invalid rate {value!r}: use <count>/<unit> with unit s, min, h or d "
            "(e.g. 10/h, 5/min, 30/s, 20/15min), or 'off'"
        )
    count, multiple = int(match.group(1)), int(match.group(2) or 1)
    if multiple == 0:
        raise ValueError(f"invalid rate {value!r}: the window cannot be 0")
    return Rate(count, multiple * unit) if count else UNLIMITED


def _unit(name: str) -> int | None:
    # Plurals of the long names ("hours", "mins"); "ms" stays unknown, never minutes.
    if name not in _UNITS and len(name) > 2 and name.endswith("s"):
        name = name[:-1]
    return _UNITS.get(name)


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
