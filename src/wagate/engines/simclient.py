"""The simulator as the gateway sees it: an engine and the phones' controls, in-process or
shared through ``wagate sim-server`` (``WAGATE_SIM_URL``, DESIGN §13).

``RemoteSimEngine`` speaks the sim-server's WebSocket protocol (``wagate.engines.simserver``).
If the socket drops, its sessions are reported lost (``Disconnected`` with ``will_retry``, open
links ``ConnectFailed``), it reconnects with backoff, and has each lost session reopened through
the gateway's ``Reopen``, which reads the credentials again and checks the session is still
this node's to serve.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import asdict
from typing import Any, Protocol

import aiohttp

from wagate.core.backoff import Backoff
from wagate.core.states import LinkMethod
from wagate.core.tasks import BackgroundTasks
from wagate.engines.base import (
    Banned,
    ConnectFailed,
    Disconnected,
    EngineEvent,
    EngineSink,
    LinkExpired,
    LoggedOut,
    Outdated,
    Paired,
    PairFailed,
    Reopen,
    Replaced,
)
from wagate.engines.sim import SimEngine, SimServer
from wagate.engines.wire import from_wire
from wagate.errors import EngineUnavailable, InvalidInput

log = logging.getLogger("wagate.engines.sim")

CALL_TIMEOUT = 10.0
RECONNECT = Backoff(min=0.5, max=10.0, factor=2.0, jitter=0.2)
# After these events the simulator keeps nothing open for the account.
_ENDS = (LinkExpired, PairFailed, LoggedOut, Replaced, Banned, Outdated)


class SimControls(Protocol):
    """What a simulated phone can do, and the simulator's counters."""

    async def scan(self, code: str, phone: str) -> str: ...
    async def pair(self, code: str, phone: str) -> str: ...
    async def set_faults(self, phone: str | None, changes: dict[str, Any]) -> dict[str, Any]: ...
    async def incoming(
        self, sender: str, to: str, text: str, only: list[str] | None, count: int
    ) -> int: ...
    async def phone_logout(self, phone: str, only: list[str] | None) -> int: ...
    async def network_flap(self, phone: str, only: list[str] | None) -> int: ...
    async def stats(self) -> dict[str, int]: ...


class LocalSimControls:
    """The controls of this process's own simulator."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    async def scan(self, code: str, phone: str) -> str:
        return self.server.scan(code, phone).value

    async def pair(self, code: str, phone: str) -> str:
        return self.server.enter_pair_code(code, phone).value

    async def set_faults(self, phone: str | None, changes: dict[str, Any]) -> dict[str, Any]:
        return asdict(self.server.set_faults(phone, **changes))

    async def incoming(
        self, sender: str, to: str, text: str, only: list[str] | None, count: int
    ) -> int:
        return self.server.incoming(sender, to, text, only, count)

    async def phone_logout(self, phone: str, only: list[str] | None) -> int:
        return self.server.phone_logout(phone, only)

    async def network_flap(self, phone: str, only: list[str] | None) -> int:
        return self.server.network_flap(phone, only)

    async def stats(self) -> dict[str, int]:
        return asdict(self.server.stats())


class RemoteSimControls:
    """The controls of a shared sim-server, over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http: aiohttp.ClientSession | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request("POST", path, body)
        return answer

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT))
        try:
            async with self._http.request(method, self.url + path, json=body) as response:
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise EngineUnavailable(f"the sim-server at {self.url} did not answer") from exc
        if response.status == 400:
            raise InvalidInput(answer["error"]["message"])
        if response.status != 200:
            raise EngineUnavailable(f"the sim-server answered {response.status}")
        return answer

    async def scan(self, code: str, phone: str) -> str:
        return str((await self._post("/scan", {"code": code, "phone": phone}))["result"])

    async def pair(self, code: str, phone: str) -> str:
        return str((await self._post("/pair", {"code": code, "phone": phone}))["result"])

    async def set_faults(self, phone: str | None, changes: dict[str, Any]) -> dict[str, Any]:
        answer = await self._post("/faults", {"phone": phone, **changes})
        answer.pop("phone", None)
        return answer

    async def incoming(
        self, sender: str, to: str, text: str, only: list[str] | None, count: int
    ) -> int:
        body = {"from": sender, "to": to, "text": text, "only": only, "count": count}
        return int((await self._post("/messages", body))["devices"])

    async def phone_logout(self, phone: str, only: list[str] | None) -> int:
        return int((await self._post(f"/phones/{phone}/logout", {"only": only}))["devices"])

    async def network_flap(self, phone: str, only: list[str] | None) -> int:
        return int((await self._post(f"/phones/{phone}/flap", {"only": only}))["devices"])

    async def stats(self) -> dict[str, int]:
        answer: dict[str, int] = await self._request("GET", "/stats", None)
        return answer

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class RemoteSimEngine:
    """The Engine protocol over a shared sim-server's WebSocket."""

    name = "sim"

    def __init__(self, url: str, *, call_timeout: float = CALL_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.call_timeout = call_timeout
        self.controls = RemoteSimControls(self.url)
        self._sink: EngineSink | None = None
        self._reopen: Reopen | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        # What the simulator holds open for each account: "link" or "session".
        self._open: dict[str, str] = {}
        self._tasks = BackgroundTasks("sim-client")
        self._closing = False

    async def start(self, sink: EngineSink, reopen: Reopen | None = None) -> None:
        self._sink, self._reopen = sink, reopen
        self._http = aiohttp.ClientSession()
        try:
            await self._dial()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._http.close()
            raise EngineUnavailable(f"the sim-server at {self.url} cannot be reached") from exc
        self._tasks.spawn(self._run(), name="socket")

    async def _dial(self) -> None:
        assert self._http is not None
        ws_url = self.url.replace("http", "ws", 1) + "/engine"
        self._ws = await self._http.ws_connect(ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=5))

    async def close(self) -> None:
        """End every session, reading the events the sim-server sent until it did, then hang up."""
        if self._sink is not None and self._ws is not None and not self._ws.closed:
            try:
                await self._call("close", "")
            except EngineUnavailable:
                log.warning("the sim-server did not answer the close", extra={"url": self.url})
        self._closing = True
        await self._tasks.close()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        await self.controls.close()
        self._open.clear()
        self._sink = None

    def healthy(self) -> bool:
        return self._sink is not None and self._ws is not None and not self._ws.closed

    async def _run(self) -> None:
        """Read the socket; when it drops, report the sessions lost and dial again."""
        attempt = 0
        while not self._closing:
            assert self._ws is not None
            async for message in self._ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._on_frame(json.loads(message.data))
            if self._closing:
                return
            log.warning("the sim-server connection dropped", extra={"url": self.url})
            lost = self._lose_all()
            while not self._closing:
                attempt += 1
                await asyncio.sleep(RECONNECT.delay(attempt))
                try:
                    await self._dial()
                except (aiohttp.ClientError, OSError, TimeoutError):
                    continue
                attempt = 0
                break
            for account_id in lost:
                self._tasks.spawn(self._reopen_one(account_id), name=f"reopen:{account_id}")

    async def _reopen_one(self, account_id: str) -> None:
        if self._reopen is not None:
            await self._reopen(account_id)

    def _lose_all(self) -> list[str]:
        for call in self._calls.values():
            if not call.done():
                call.set_exception(EngineUnavailable("the sim-server connection dropped"))
        lost = [a for a, kind in self._open.items() if kind == "session"]
        for account_id, kind in list(self._open.items()):
            if kind == "link":
                self._emit(account_id, ConnectFailed("server_unavailable", retryable=True))
            else:
                self._emit(account_id, Disconnected("connection_lost", will_retry=True))
        self._open.clear()
        return lost

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if "account" in frame:
            try:
                event = from_wire(frame["event"])
            except (ValueError, TypeError, KeyError):
                log.warning("unknown event from the sim-server")
                return
            self._track(frame["account"], event)
            self._emit(frame["account"], event)
            return
        call = self._calls.get(frame.get("id", -1))
        if call is None or call.done():
            return
        if frame.get("ok"):
            call.set_result(frame.get("result"))
        else:
            call.set_exception(EngineUnavailable(str(frame.get("error"))))

    def _track(self, account_id: str, event: EngineEvent) -> None:
        kind = self._open.get(account_id)
        if isinstance(event, Paired):
            self._open[account_id] = "session"
        elif (
            isinstance(event, _ENDS)
            or (isinstance(event, ConnectFailed) and (kind == "link" or not event.retryable))
            or (isinstance(event, Disconnected) and not event.will_retry)
        ):
            self._open.pop(account_id, None)

    def _emit(self, account_id: str, event: EngineEvent) -> None:
        if self._sink is not None:
            self._sink(account_id, event)

    async def _call(self, op: str, account_id: str, **args: Any) -> Any:
        ws = self._ws
        if self._sink is None or ws is None or ws.closed:
            raise EngineUnavailable("the sim-server is not connected")
        self._next_id += 1
        call_id = self._next_id
        call: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = call
        try:
            await ws.send_str(json.dumps({"id": call_id, "op": op, "account": account_id, **args}))
            return await asyncio.wait_for(call, self.call_timeout)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise EngineUnavailable(f"the sim-server did not answer {op}") from exc
        finally:
            self._calls.pop(call_id, None)

    async def link(self, account_id: str, method: LinkMethod, phone: str | None) -> None:
        self._open[account_id] = "link"
        await self._call("link", account_id, method=method.value, phone=phone)

    async def cancel_link(self, account_id: str) -> None:
        self._open.pop(account_id, None)
        await self._call("cancel_link", account_id)

    async def connect(self, account_id: str, credentials: bytes) -> None:
        self._open[account_id] = "session"
        await self._call("connect", account_id, credentials=base64.b64encode(credentials).decode())

    async def disconnect(self, account_id: str) -> None:
        self._open.pop(account_id, None)
        await self._call("disconnect", account_id)

    async def logout(self, account_id: str) -> None:
        self._open.pop(account_id, None)
        await self._call("logout", account_id)

    async def send_text(self, account_id: str, to: str, text: str) -> str:
        return str(await self._call("send_text", account_id, to=to, text=text))


async def check_reachable(url: str) -> None:
    """EngineUnavailable unless a sim-server answers at ``url``."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as http,
            http.get(url.rstrip("/") + "/health") as response,
        ):
            if response.status == 200:
                return
    except (aiohttp.ClientError, OSError, TimeoutError):
        pass
    raise EngineUnavailable(
        f"the sim-server at {url} cannot be reached (is `wagate sim-server` running?)"
    )


def sim_controls(engine: object) -> SimControls | None:
    """The phones' controls of the engine's simulator; None for an engine that is not one."""
    if isinstance(engine, RemoteSimEngine):
        return engine.controls
    if isinstance(engine, SimEngine):
        return LocalSimControls(engine.server)
    return None
