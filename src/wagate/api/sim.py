"""Simulator controls: a simulated phone scans a code or types a pairing code (engine ``sim``)."""

from __future__ import annotations

from fastapi import APIRouter

from wagate.api.deps import CallerDep, GatewayDep
from wagate.api.schemas import ErrorBody, ScanOut, ScanRequest
from wagate.engines.sim import SimEngine
from wagate.errors import NotFound

router = APIRouter(
    prefix="/v1/sim",
    tags=["simulator"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        404: {"model": ErrorBody, "description": "The gateway does not run the simulator"},
    },
)


def _sim(gateway: GatewayDep) -> SimEngine:
    engine = gateway.engine
    if not isinstance(engine, SimEngine):
        raise NotFound("the simulator routes exist only with the sim engine")
    return engine


@router.post("/scan", response_model=ScanOut)
async def scan(body: ScanRequest, caller: CallerDep, gateway: GatewayDep) -> ScanOut:
    """A simulated phone scans a QR string; the answer is what the phone would show."""
    result = _sim(gateway).server.scan(body.code, body.phone)
    return ScanOut(result=result.value)


@router.post("/pair", response_model=ScanOut)
async def pair(body: ScanRequest, caller: CallerDep, gateway: GatewayDep) -> ScanOut:
    """A simulated phone's user types a pairing code."""
    result = _sim(gateway).server.enter_pair_code(body.code, body.phone)
    return ScanOut(result=result.value)
