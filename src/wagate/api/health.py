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
    """The database answers, the engine takes commands, and restoration has finished."""
    database = await gateway.db.ping()
    engine = gateway.engine is not None and gateway.engine.healthy()
    restored = gateway.restored.is_set()
    ready = database and engine and restored
    body = {
        "status": "ok" if ready else "unavailable",
        "database": database,
        "engine": engine,
        "restored": restored,
    }
    return JSONResponse(body, status_code=200 if ready else 503)
