"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from wagate.api.deps import GatewayDep
from wagate.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"description": "Database or engine not ready"}})
async def readyz(gateway: GatewayDep) -> JSONResponse:
    """The database answers and the engine takes commands."""
    database = await gateway.db.ping()
    engine = gateway.engine is not None and gateway.engine.healthy()
    ready = database and engine
    body = {"status": "ok" if ready else "unavailable", "database": database, "engine": engine}
    return JSONResponse(body, status_code=200 if ready else 503)
