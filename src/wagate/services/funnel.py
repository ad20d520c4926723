"""The link funnel, counted per link attempt (DESIGN §8).

One attempt shows up to six QR codes, so codes and attempts are never divided by each other:
every rate here is attempts over attempts.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.db.models import Account, LinkAttempt


@dataclass
class Funnel:
    attempts: int = 0
    open: int = 0
    first_code_shown: int = 0
    paired: int = 0
    connected: int = 0
    qr_codes: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    time_to_link: list[float] = field(default_factory=list)

    @property
    def ended(self) -> int:
        return self.attempts - self.open

    @property
    def success_rate(self) -> float | None:
        """Linked attempts over ended attempts; None before any attempt ended."""
        return round(self.outcomes.get("linked", 0) / self.ended, 4) if self.ended else None

    def percentile(self, q: float) -> float | None:
        if not self.time_to_link:
            return None
        if len(self.time_to_link) == 1:
            return round(self.time_to_link[0], 3)
        cuts = statistics.quantiles(self.time_to_link, n=100, method="inclusive")
        # round(): int(0.29 * 100) is 28, one percentile too low.
        return round(cuts[round(q * 100) - 1], 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": "link_attempt",
            "attempts": self.attempts,
            "open": self.open,
            "ended": self.ended,
            "first_code_shown": self.first_code_shown,
            "paired": self.paired,
            "connected": self.connected,
            "success_rate": self.success_rate,
            "qr_codes": self.qr_codes,
            "qr_codes_per_attempt": round(self.qr_codes / self.attempts, 3)
            if self.attempts
            else None,
            "time_to_link_seconds": {"p50": self.percentile(0.5), "p90": self.percentile(0.9)},
            "outcomes": dict(sorted(self.outcomes.items())),
            "reasons": {k: dict(sorted(v.items())) for k, v in sorted(self.reasons.items())},
        }


async def compute(
    session: AsyncSession,
    *,
    workspace_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Funnel:
    """The funnel over attempts started in ``[since, until)``, for one workspace or all."""
    query = select(LinkAttempt)
    if workspace_id is not None:
        query = query.join(Account, Account.id == LinkAttempt.account_id).where(
            Account.workspace_id == workspace_id
        )
    if since is not None:
        query = query.where(LinkAttempt.started_at >= since)
    if until is not None:
        query = query.where(LinkAttempt.started_at < until)
    funnel = Funnel()
    outcomes: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for attempt in (await session.execute(query)).scalars():
        funnel.attempts += 1
        funnel.qr_codes += attempt.qr_count
        funnel.open += attempt.ended_at is None
        funnel.first_code_shown += attempt.first_qr_at is not None
        funnel.paired += attempt.paired_at is not None
        funnel.connected += attempt.connected_at is not None
        if attempt.outcome is not None:
            outcomes[attempt.outcome] += 1
            reasons.setdefault(attempt.outcome, Counter())[attempt.reason or "none"] += 1
        if attempt.outcome == "linked" and attempt.connected_at is not None:
            funnel.time_to_link.append((attempt.connected_at - attempt.started_at).total_seconds())
    funnel.outcomes = dict(outcomes)
    funnel.reasons = {k: dict(v) for k, v in reasons.items()}
    return funnel
