"""Carrying a request to the node that serves its account (DESIGN §13: any node answers any call
the same way). A send must reach the engine session, and only its owner has it: another node
passes the request on over HTTP, with the caller's own key, and returns the owner's answer as it
came. A request carried once is never carried again, so two nodes that disagree for a moment about
an owner cannot pass it back and forth.

During a deploy a session moves between nodes: for a moment nobody serves it, or its owner has
stopped listening. A request then waits (``CARRY_PATIENCE`` at most) for the session to settle
on its next node instead of failing; an owner that could not be reached never saw the request,
so it is carried again safely."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
from fastapi import Request, Response

from wagate.errors import EngineUnavailable, SessionMoving
from wagate.gateway import Gateway
from wagate.services import cluster

log = logging.getLogger("wagate.api")
# Names the node that carried the request; a node answers such a request itself.
CARRIED_BY = "X-Wagate-Carried-By"
# Headers of the answer that are the owner's to say, passed on as they came.
_ANSWER_HEADERS = ("content-type", "retry-after")
# Seconds a request waits for its account's session to settle on a node (a handoff takes less
# than one; a node killed outright is noticed only after its lease, so that one is answered).
CARRY_PATIENCE = 5.0
_RECHECK = 0.1
# How many times a send follows its session from node to node before it gives up.
MOVES = 3


def was_carried(request: Request) -> bool:
    return CARRIED_BY in request.headers


async def to_owner(request: Request, gateway: Gateway, account_id: str) -> Response | None:
    """The owner's answer when another live node serves the account; None when this node
    should answer itself (it serves the account, nobody does, or the request was carried)."""
    if was_carried(request) or gateway.peers is None:
        return None
    me = gateway.settings.node_name
    deadline = time.monotonic() + CARRY_PATIENCE
    while True:
        if gateway.sessions is not None and account_id in gateway.sessions.held:
            return None  # served here: no need to ask the database (the common, one-node case)
        async with gateway.db.read_sessions() as session:
            owner = await cluster.owner(session, account_id)
            moving = owner is None and await cluster.in_transit(session, account_id)
        patient = time.monotonic() < deadline
        if moving and patient:
            await asyncio.sleep(_RECHECK)
            continue
        if owner is None or owner[0] == me or owner[1] is None:
            return None
        try:
            answer = await _carry(request, gateway, owner[1])
        except httpx.ConnectError as exc:  # it never saw the request: it is going away
            if patient:
                await asyncio.sleep(_RECHECK)
                continue
            raise _no_answer(owner[0]) from exc
        except httpx.HTTPError as exc:
            raise _no_answer(owner[0]) from exc
        if answer.status_code == 503 and patient and _moving(answer):
            await asyncio.sleep(_RECHECK)  # it was handing the session on: ask the next owner
            continue
        return answer


async def _carry(request: Request, gateway: Gateway, url: str) -> Response:
    assert gateway.peers is not None
    headers = {CARRIED_BY: gateway.settings.node_name}
    for header in ("authorization", "content-type"):
        if header in request.headers:
            headers[header] = request.headers[header]
    target = f"{url}{request.url.path}"
    if request.url.query:
        target += f"?{request.url.query}"
    answer = await gateway.peers.request(
        request.method, target, content=await request.body(), headers=headers
    )
    passed = {k: v for k, v in answer.headers.items() if k.lower() in _ANSWER_HEADERS}
    return Response(answer.content, status_code=answer.status_code, headers=passed)


def _moving(answer: Response) -> bool:
    try:
        return bool(json.loads(bytes(answer.body))["error"]["code"] == SessionMoving.code)
    except (ValueError, KeyError, TypeError):
        return False


def _no_answer(node: str) -> EngineUnavailable:
    log.warning("node serving the account did not answer", extra={"node": node})
    return EngineUnavailable(
        "the gateway node serving this account did not answer; retry in a moment"
    )
