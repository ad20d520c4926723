"""Carrying a request to the node that serves its account (DESIGN §13: any node answers any call
the same way). A send must reach the engine session, and only its owner has it: another node
passes the request on over HTTP, with the caller's own key, and returns the owner's answer as it
came. A request carried once is never carried again, so two nodes that disagree for a moment about
an owner cannot pass it back and forth."""

from __future__ import annotations

import logging

import httpx
from fastapi import Request, Response

from wagate.errors import EngineUnavailable
from wagate.gateway import Gateway
from wagate.services import cluster

log = logging.getLogger("wagate.api")
# Names the node that carried the request; a node answers such a request itself.
CARRIED_BY = "X-Wagate-Carried-By"
# Headers of the answer that are the owner's to say, passed on as they came.
_ANSWER_HEADERS = ("content-type", "retry-after")


async def to_owner(request: Request, gateway: Gateway, account_id: str) -> Response | None:
    """The owner's answer when another live node serves the account; None when this node
    should answer itself (it serves the account, nobody does, or the request was carried)."""
    if CARRIED_BY in request.headers or gateway.peers is None:
        return None
    if gateway.sessions is not None and account_id in gateway.sessions.held:
        return None  # served here: no need to ask the database (the common, one-node case)
    async with gateway.db.read_sessions() as session:
        owner = await cluster.owner(session, account_id)
    me = gateway.settings.node_name
    if owner is None or owner[0] == me or owner[1] is None:
        return None
    name, url = owner
    headers = {CARRIED_BY: me}
    for header in ("authorization", "content-type"):
        if header in request.headers:
            headers[header] = request.headers[header]
    target = f"{url}{request.url.path}"
    if request.url.query:
        target += f"?{request.url.query}"
    try:
        answer = await gateway.peers.request(
            request.method, target, content=await request.body(), headers=headers
        )
    except httpx.HTTPError as exc:
        log.warning("node serving the account did not answer", extra={"node": name})
        raise EngineUnavailable(
            "the gateway node serving this account did not answer; retry in a moment"
        ) from exc
    passed = {k: v for k, v in answer.headers.items() if k.lower() in _ANSWER_HEADERS}
    return Response(answer.content, status_code=answer.status_code, headers=passed)
