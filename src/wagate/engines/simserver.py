"""``wagate sim-server``: one simulated WhatsApp shared by every gateway node (DESIGN §13).

Each node's engine (``wagate.engines.simclient.RemoteSimEngine``) holds one WebSocket to
``/engine``; the server gives it its own ``SimEngine`` over the one ``SimServer``, so codes, linked
devices and phones are shared, and a device that connects from a second node replaces the first
connection, as WhatsApp does. A node that goes away (its socket closes) loses its connections.

Frames on the socket are JSON text. Node → server: ``{"id": 7, "op": "connect", "account": "…",
…arguments}``; server → node: ``{"id": 7, "ok": true, "result": …}`` or ``{"id": 7, "ok": false,
"error": "…"}``, and events ``{"account": "…", "event": <wire form>}`` (``wagate.engines.wire``),
in the order the simulator emitted them. A node that leaves sends ``{"op": "close"}`` first:
once it has the answer, it has read every event the simulator sent it.

HTTP controls, what a phone does (the nodes' ``/v1/sim/*`` routes call them): ``POST /scan``,
``POST /pair``, ``POST /faults``, ``POST /messages``, ``POST /phones/{phone}/logout``,
``POST /phones/{phone}/flap``; ``GET /stats``. The server has no authentication: it is a test
and demo tool, and listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import WSMsgType, web

from wagate.core.states import LinkMethod
from wagate.engines.sim import SimEngine, SimServer
from wagate.engines.wire import to_wire
from wagate.errors import WagateError

log = logging.getLogger("wagate.engines.simserver")

SERVER_KEY: web.AppKey[SimServer] = web.AppKey("sim", SimServer)
Frame = dict[str, Any]
Op = Callable[[SimEngine, Frame], Awaitable[Any]]


class BadRequest(ValueError):
    """A control request or a frame the server cannot use."""


async def _link(engine: SimEngine, f: Frame) -> None:
    await engine.link(f["account"], LinkMethod(f["method"]), f.get("phone"))


async def _connect(engine: SimEngine, f: Frame) -> None:
    await engine.connect(f["account"], base64.b64decode(f["credentials"]))


async def _send_text(engine: SimEngine, f: Frame) -> str:
    return await engine.send_text(f["account"], f["to"], f["text"])


async def _close(engine: SimEngine, f: Frame) -> None:
    """The node is leaving: every session ends; the events before this answer are all it gets."""
    await engine.close()


OPS: dict[str, Op] = {
    "close": _close,
    "link": _link,
    "cancel_link": lambda engine, f: engine.cancel_link(f["account"]),
    "connect": _connect,
    "disconnect": lambda engine, f: engine.disconnect(f["account"]),
    "logout": lambda engine, f: engine.logout(f["account"]),
    "send_text": _send_text,
}


async def _apply(engine: SimEngine, frame: Frame) -> Frame:
    """One command from a node, answered with its result or its error."""
    call_id = frame.get("id")
    op = OPS.get(str(frame.get("op")))
    if op is None:
        return {"id": call_id, "ok": False, "error": f"unknown op {frame.get('op')!r}"}
    try:
        return {"id": call_id, "ok": True, "result": await op(engine, frame)}
    except WagateError as exc:
        return {"id": call_id, "ok": False, "error": exc.message}
    except (KeyError, ValueError, TypeError) as exc:
        return {"id": call_id, "ok": False, "error": f"bad {frame.get('op')} frame: {exc!r}"}


async def _write(ws: web.WebSocketResponse, out: asyncio.Queue[Frame | None]) -> None:
    while (frame := await out.get()) is not None:
        if ws.closed:
            return
        await ws.send_str(json.dumps(frame, separators=(",", ":")))


async def engine_socket(request: web.Request) -> web.WebSocketResponse:
    """One gateway node: its own engine over the shared server, for as long as the socket lives."""
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    out: asyncio.Queue[Frame | None] = asyncio.Queue()
    engine = SimEngine(request.app[SERVER_KEY])

    def sink(account_id: str, event: Any) -> None:
        out.put_nowait({"account": account_id, "event": to_wire(event)})

    await engine.start(sink)
    writer = asyncio.create_task(_write(ws, out), name="sim-server:writer")
    log.info("node connected", extra={"peer": request.remote})
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(message.data)
            except ValueError:
                continue
            if isinstance(frame, dict):
                out.put_nowait(await _apply(engine, frame))
    finally:
        await engine.close()
        out.put_nowait(None)
        await writer
        log.info("node disconnected", extra={"peer": request.remote})
    return ws


async def _body(request: web.Request) -> Frame:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _text(body: Frame, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def _only(body: Frame) -> list[str] | None:
    only = body.get("only")
    if only is not None and not (isinstance(only, list) and all(isinstance(a, str) for a in only)):
        raise BadRequest("only must be a list of account ids")
    return only


async def scan(request: web.Request) -> web.Response:
    body = await _body(request)
    result = request.app[SERVER_KEY].scan(_text(body, "code"), _text(body, "phone"))
    return web.json_response({"result": result.value})


async def pair(request: web.Request) -> web.Response:
    body = await _body(request)
    result = request.app[SERVER_KEY].enter_pair_code(_text(body, "code"), _text(body, "phone"))
    return web.json_response({"result": result.value})


async def faults(request: web.Request) -> web.Response:
    body = await _body(request)
    phone = body.pop("phone", None)
    if phone is not None and not isinstance(phone, str):
        raise BadRequest("phone must be a string")
    current = request.app[SERVER_KEY].set_faults(phone, **body)
    return web.json_response({"phone": phone, **asdict(current)})


async def messages(request: web.Request) -> web.Response:
    body = await _body(request)
    count = body.get("count", 1)
    if not isinstance(count, int) or count < 1:
        raise BadRequest("count must be a positive integer")
    server = request.app[SERVER_KEY]
    devices = server.incoming(
        _text(body, "from"), _text(body, "to"), _text(body, "text"), _only(body), count
    )
    return web.json_response({"devices": devices})


async def phone_logout(request: web.Request) -> web.Response:
    only = _only(await _body(request))
    devices = request.app[SERVER_KEY].phone_logout(request.match_info["phone"], only)
    return web.json_response({"devices": devices})


async def phone_flap(request: web.Request) -> web.Response:
    only = _only(await _body(request))
    devices = request.app[SERVER_KEY].network_flap(request.match_info["phone"], only)
    return web.json_response({"devices": devices})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[SERVER_KEY].stats()))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "nodes": len(request.app[SERVER_KEY].engines)})


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bad input is a 400 with the reason; an engine that is not there, a 503."""
    try:
        return await handler(request)
    except (BadRequest, ValueError, TypeError) as exc:
        error = {"code": "invalid_request", "message": str(exc)}
        return web.json_response({"error": error}, status=400)
    except WagateError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=503)


def build_app(server: SimServer) -> web.Application:
    app = web.Application(middlewares=[errors])
    app[SERVER_KEY] = server
    app.router.add_get("/engine", engine_socket)
    app.router.add_post("/scan", scan)
    app.router.add_post("/pair", pair)
    app.router.add_post("/faults", faults)
    app.router.add_post("/messages", messages)
    app.router.add_post("/phones/{phone}/logout", phone_logout)
    app.router.add_post("/phones/{phone}/flap", phone_flap)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    return app
