"""Prometheus metrics (DESIGN §8); like ``/healthz`` it needs no key: it carries counts only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from wagate.api.deps import GatewayDep, SessionDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(gateway: GatewayDep, session: SessionDep) -> Response:
    """Every wagate metric, in the Prometheus text format."""
    await gateway.metrics.refresh_accounts(session)
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
