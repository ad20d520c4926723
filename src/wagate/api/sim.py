"""Simulator controls (engine ``sim``): phones scan codes, type pairing codes, log out, lose the
network; faults are switched on and off. Any valid key may use them: they act on the simulator,
and a phone's actions (log out, network flap, a message) reach only the caller's workspace.
With ``WAGATE_SIM_URL`` they reach the shared sim-server, so they work alike on every node."""

from __future__ import annotations

from fastapi import APIRouter

from wagate.api.deps import CallerDep, GatewayDep
from wagate.api.schemas import (
    DevicesOut,
    ErrorBody,
    FaultsOut,
    FaultsRequest,
    Phone,
    ScanOut,
    ScanRequest,
    SimMessageRequest,
    SimStatsOut,
)
from wagate.core.caller import Caller
from wagate.engines.simclient import SimControls, sim_controls
from wagate.errors import NotFound
from wagate.gateway import Gateway
from wagate.services.accounts import account_ids

router = APIRouter(
    prefix="/v1/sim",
    tags=["simulator"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        404: {"model": ErrorBody, "description": "The gateway does not run the simulator"},
    },
)


def _sim(gateway: GatewayDep) -> SimControls:
    controls = sim_controls(gateway.engine)
    if controls is None:
        raise NotFound("the simulator routes exist only with the sim engine")
    return controls


async def _reachable(gateway: Gateway, caller: Caller) -> list[str] | None:
    """The accounts a simulated phone may reach for this caller: a workspace key touches only
    its own workspace's devices (the admin key, all), so no tenant can disturb another."""
    if caller.is_admin:
        return None
    assert caller.workspace_id is not None
    async with gateway.db.read_sessions() as session:
        return sorted(await account_ids(session, caller.workspace_id))


@router.post("/scan", response_model=ScanOut)
async def scan(body: ScanRequest, caller: CallerDep, gateway: GatewayDep) -> ScanOut:
    """A simulated phone scans a QR string; the answer is what the phone would show."""
    return ScanOut(result=await _sim(gateway).scan(body.code, body.phone))


@router.post("/pair", response_model=ScanOut)
async def pair(body: ScanRequest, caller: CallerDep, gateway: GatewayDep) -> ScanOut:
    """A simulated phone's user types a pairing code."""
    return ScanOut(result=await _sim(gateway).pair(body.code, body.phone))


@router.post("/faults", response_model=FaultsOut)
async def faults(body: FaultsRequest, caller: CallerDep, gateway: GatewayDep) -> FaultsOut:
    """Switch simulated faults for one phone (``phone``) or globally; fields left out keep their
    value. Any valid key may do this: it changes only the simulator, never a real account."""
    changes = body.model_dump(exclude={"phone"}, exclude_none=True)
    current = await _sim(gateway).set_faults(body.phone, changes)
    return FaultsOut(phone=body.phone, **current)


@router.post("/messages", response_model=DevicesOut)
async def incoming_message(
    body: SimMessageRequest, caller: CallerDep, gateway: GatewayDep
) -> DevicesOut:
    """A simulated phone (``from``) sends a text to a number (``to``), ``count`` times at once;
    every account linked to that number receives each as ``message.received``."""
    only = await _reachable(gateway, caller)
    devices = await _sim(gateway).incoming(body.sender, body.to, body.text, only, body.count)
    return DevicesOut(devices=devices)


@router.post("/phones/{phone}/logout", response_model=DevicesOut)
async def phone_logout(phone: Phone, caller: CallerDep, gateway: GatewayDep) -> DevicesOut:
    """The phone logs out every linked device (Settings → Linked devices → Log out)."""
    only = await _reachable(gateway, caller)
    return DevicesOut(devices=await _sim(gateway).phone_logout(phone, only))


@router.post("/phones/{phone}/flap", response_model=DevicesOut)
async def phone_flap(phone: Phone, caller: CallerDep, gateway: GatewayDep) -> DevicesOut:
    """The network of every device linked to the phone drops once; they reconnect."""
    only = await _reachable(gateway, caller)
    return DevicesOut(devices=await _sim(gateway).network_flap(phone, only))


@router.get("/stats", response_model=SimStatsOut)
async def stats(caller: CallerDep, gateway: GatewayDep) -> SimStatsOut:
    """The simulator's counters: devices, live connections, and whether any device was ever
    connected twice at once (the shared sim-server's ``GET /stats``)."""
    return SimStatsOut(**await _sim(gateway).stats())
