"""The link funnel over attempts (DESIGN §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from wagate.api.deps import CallerDep, SessionDep
from wagate.api.schemas import ErrorBody
from wagate.errors import InvalidInput
from wagate.services import funnel

router = APIRouter(
    tags=["funnel"],
    responses={401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"}},
)


_EXAMPLE = {
    "unit": "link_attempt",
    "attempts": 40,
    "open": 1,
    "ended": 39,
    "first_code_shown": 38,
    "paired": 30,
    "connected": 28,
    "success_rate": 0.718,
    "qr_codes": 95,
    "qr_codes_per_attempt": 2.375,
    "time_to_link_seconds": {"p50": 21.4, "p90": 58.0},
    "outcomes": {"cancelled": 3, "expired": 6, "failed": 2, "linked": 28},
    "reasons": {
        "cancelled": {"cancelled": 3},
        "expired": {"link_expired": 6},
        "failed": {"server_unavailable": 2},
        "linked": {"none": 28},
    },
}


@router.get(
    "/v1/funnel",
    responses={200: {"content": {"application/json": {"example": _EXAMPLE}}}},
)
async def get_funnel(
    caller: CallerDep,
    session: SessionDep,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Attempts → first code shown → paired → connected, per link attempt (never per QR code)."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a timezone, e.g. 2026-01-01T00:00:00Z")
    result = await funnel.compute(
        session, workspace_id=caller.workspace_id, since=since, until=until
    )
    return result.as_dict()
