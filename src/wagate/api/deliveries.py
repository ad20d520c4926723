"""Webhook deliveries: inspect them and replay dead ones (DESIGN §6, §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, JsonValue
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.api.deps import CallerDep, GatewayDep, SessionDep
from wagate.api.schemas import MAX_EVENT_ID, ErrorBody, example
from wagate.core.statuses import DeliveryStatus
from wagate.db.models import WebhookDelivery
from wagate.webhooks import queue

router = APIRouter(
    prefix="/v1/webhook-deliveries",
    tags=["webhooks"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        422: {"model": ErrorBody, "description": "Invalid input"},
    },
)


_DELIVERY: dict[str, JsonValue] = {
    "id": "3f2b8c1a-6d4e-4f5a-9b7c-1e2d3f4a5b6c",
    "event_id": 42,
    "event_type": "account.status",
    "workspace_id": "9a7e4c2b-1d3f-4e5a-b6c7-d8e9f0a1b2c3",
    "account_id": "0b6d3c1e-5a0b-4c55-8f0e-0b4e4a6f2d10",
    "status": "pending",
    "attempts": 2,
    "next_attempt_at": "2026-01-01T12:00:04Z",
    "last_status": 503,
    "last_error": "http_5xx",
    "delivered_at": None,
    "created_at": "2026-01-01T12:00:00Z",
}


class DeliveryOut(BaseModel):
    """One event's delivery to its workspace's webhook URL."""

    model_config = example(_DELIVERY)

    id: str
    event_id: int = Field(description="Also the X-Wagate-Delivery header of every attempt.")
    event_type: str = Field(examples=["account.status"])
    workspace_id: str
    account_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status: int | None = Field(description="HTTP status of the last attempt, if any.")
    last_error: str | None = Field(
        examples=["http_5xx"],
        description="timeout, refused, http_4xx, http_5xx, other, disabled or blocked_address "
        "(the URL leads only to addresses webhooks are not sent to); null once sent.",
    )
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, delivery: WebhookDelivery, event_type: str) -> DeliveryOut:
        return cls(
            id=delivery.id,
            event_id=delivery.event_id,
            event_type=event_type,
            workspace_id=delivery.workspace_id,
            account_id=delivery.account_id,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status=delivery.last_status,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
            created_at=delivery.created_at,
        )


class DeliveryPage(BaseModel):
    model_config = example({"deliveries": [_DELIVERY], "next_after": 42})

    deliveries: list[DeliveryOut]
    next_after: int = Field(description="Pass as ``after`` to read on.")


@router.get("", response_model=DeliveryPage)
async def list_deliveries(
    caller: CallerDep,
    session: SessionDep,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_EVENT_ID, description="The last event id seen; 0 from the start."),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryPage:
    """Deliveries in event order: a workspace key sees its own, the admin key all."""
    rows = await queue.page(session, caller, status=status, after=after, limit=limit)
    return DeliveryPage(
        deliveries=[DeliveryOut.of(d, t) for d, t in rows],
        next_after=rows[-1][0].event_id if rows else after,
    )


@router.post(
    "/{delivery_id}/retry",
    response_model=DeliveryOut,
    responses={
        404: {"model": ErrorBody, "description": "No such delivery for this key"},
        409: {"model": ErrorBody, "description": "Delivered already"},
    },
)
async def retry_delivery(delivery_id: str, caller: CallerDep, gateway: GatewayDep) -> DeliveryOut:
    """A dead or pending delivery becomes due now, its attempts reset (a replay)."""

    async def work(session: AsyncSession) -> DeliveryOut:
        delivery, event_type = await queue.retry(session, caller, delivery_id)
        return DeliveryOut.of(delivery, event_type)

    return await gateway.db.run(work)
