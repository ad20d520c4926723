"""The real engine: whatsmeow through neonize, in engine-host subprocesses (DESIGN §4).

The gateway never loads neonize. It starts ``hosts`` subprocesses
(``wagate.engines.whatsmeow.host``), places each account on one of them, relays commands as frames
under its own timeout, and turns the hosts' event frames into ``EngineEvent``s for the sink, on the
event loop.

A host that dies takes only its own sessions with it. Its accounts hear why — an open link ends
(``ConnectFailed("engine_host_died")``), a session is ``Disconnected("engine_host_died",
will_retry=True)`` — the host is restarted, and each session is reopened through the ``reopen``
given to ``start`` (the session manager's restoration path, ``sessions.commands.reopen``), so the
credentials are read from the auth store again and an account stopped meanwhile stays stopped.
Sessions whose connect fails are retried the same way, with backoff, while they stay linked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

from wagate.core.backoff import Backoff
from wagate.core.states import LinkMethod
from wagate.core.tasks import BackgroundTasks
from wagate.engines.base import (
    Connected,
    ConnectFailed,
    CredentialsUpdated,
    Disconnected,
    EngineEvent,
    EngineSink,
    Paired,
    Reopen,
)
from wagate.engines.whatsmeow import frames
from wagate.engines.whatsmeow.adapter import TERMINAL
from wagate.engines.wire import from_wire
from wagate.errors import EngineTimeout, EngineUnavailable

log = logging.getLogger("wagate.engines.whatsmeow")

INSTALL_HINT = (
    "install the real engine with: pip install 'wagate[whatsmeow]' (it needs the system "
    "libmagic: apt-get install libmagic1), or start with --engine sim (WAGATE_ENGINE=sim)"
)
RESTART = Backoff(min=0.2, max=30.0, factor=2.0, jitter=0.2)
RECONNECT = Backoff(min=1.0, max=60.0, factor=2.0, jitter=0.2)
Kind = Literal["link", "session"]


class _Host:
    """One subprocess, its pending requests and the accounts it runs."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.accounts: dict[str, Kind] = {}
        self.up = asyncio.Event()
        self.write_lock = asyncio.Lock()


class WhatsmeowEngine:
    """The Engine protocol over engine hosts; every call answers within ``call_timeout``."""

    name = "whatsmeow"

    def __init__(
        self,
        data_dir: Path,
        *,
        hosts: int = 2,
        connect_timeout: float = 30.0,
        call_timeout: float = 10.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.env = env
        # Set by ``start``: wagate's restoration path for a session a dead host took with it.
        self._reopen_session: Reopen | None = None
        self._hosts = [_Host(i) for i in range(max(1, hosts))]
        self._where: dict[str, _Host] = {}
        self._blobs: dict[str, bytes] = {}
        self._retries: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._sink: EngineSink | None = None
        self._tasks = BackgroundTasks("whatsmeow")
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, sink: EngineSink, reopen: Reopen | None = None) -> None:
        self._sink = sink
        self._reopen_session = reopen
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.gather(*(self._spawn(host) for host in self._hosts))
        except BaseException:
            await self.close()
            raise

    async def _spawn(self, host: _Host) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wagate.engines.whatsmeow.host",
            "--data-dir", str(self.data_dir), "--connect-timeout", str(self.connect_timeout),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **(self.env or {})},
            # Its own session: a Ctrl+C or SIGTERM for the gateway's group reaches the gateway
            # alone, which then stops its hosts in order.
            start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            hello = await asyncio.wait_for(frames.read(proc.stdout), 60.0)
        except (TimeoutError, frames.FrameError) as exc:
            proc.kill()
            await proc.wait()
            raise EngineUnavailable("an engine host did not start") from exc
        if not hello or not hello.get("hello"):
            await proc.wait()
            detail = (hello or {}).get("error", "it exited at once")
            raise EngineUnavailable(f"the whatsmeow engine cannot load ({detail}); {INSTALL_HINT}")
        host.proc, host.pid = proc, int(hello["pid"])
        host.up.set()
        self._tasks.spawn(self._read(host, proc), name=f"host{host.index}")
        log.info("engine host started", extra={"host": host.index, "pid": host.pid})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self._hosts:
            host.up.clear()
        await asyncio.gather(*(self._stop_host(host) for host in self._hosts))
        await self._tasks.close()
        self._sink = None

    async def _stop_host(self, host: _Host) -> None:
        proc = host.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self._send(host, {"id": next(self._ids), "op": "shutdown"})
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def healthy(self) -> bool:
        return self._sink is not None and any(host.up.is_set() for host in self._hosts)

    def host_pids(self) -> list[int | None]:
        """The current process id of each host (operators, tests)."""
        return [host.pid for host in self._hosts]

    async def ping(self, index: int) -> dict[str, Any]:
        """What one host reports: its pid and the accounts it holds."""
        result: dict[str, Any] = await self._call(self._hosts[index], {"op": "ping"})
        return result

    # -- the host's frames ---------------------------------------------------------------------

    async def _read(self, host: _Host, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while (frame := await frames.read(proc.stdout)) is not None:
                if "event" in frame:
                    try:
                        self._on_event(host, str(frame.get("account")), frame["event"])
                    except Exception:  # one bad event must not stop the host's stream
                        log.exception("engine event not relayed", extra={"host": host.index})
                    continue
                future = host.pending.pop(int(frame.get("id", 0)), None)
                if future is not None and not future.done():
                    if frame.get("ok"):
                        future.set_result(frame.get("result"))
                    else:
                        future.set_exception(EngineUnavailable(str(frame.get("error"))))
        except frames.FrameError:
            log.error("engine host sent a broken frame", extra={"host": host.index})
            proc.kill()
        await proc.wait()
        if not self._closed:
            await self._host_died(host, proc.returncode)

    def _on_event(self, host: _Host, account_id: str, wire: dict[str, Any]) -> None:
        try:
            event = from_wire(wire)
        except (ValueError, TypeError):
            log.warning("unknown event from an engine host", extra={"type": wire.get("type")})
            return
        if isinstance(event, Paired | CredentialsUpdated | Connected):
            host.accounts[account_id] = "session"
        if isinstance(event, CredentialsUpdated):
            self._blobs[account_id] = event.blob
        if isinstance(event, Connected):
            self._retries.pop(account_id, None)
        if isinstance(event, ConnectFailed) and host.accounts.get(account_id) == "session":
            host.accounts.pop(account_id, None)
            self._retry_later(account_id)
        elif isinstance(event, (*TERMINAL, ConnectFailed)):
            host.accounts.pop(account_id, None)
        self._emit(account_id, event)

    def _emit(self, account_id: str, event: EngineEvent) -> None:
        if self._sink is not None:
            self._sink(account_id, event)

    async def _host_died(self, host: _Host, code: int | None) -> None:
        host.up.clear()
        log.error("engine host died", extra={"host": host.index, "pid": host.pid, "code": code})
        for future in host.pending.values():
            if not future.done():
                future.set_exception(EngineUnavailable("the engine host died"))
        host.pending.clear()
        lost, host.accounts = host.accounts, {}
        for account_id, kind in lost.items():
            if kind == "link":
                self._emit(account_id, ConnectFailed("engine_host_died", retryable=False))
            else:
                self._emit(account_id, Disconnected("engine_host_died", will_retry=True))
        for attempt in itertools.count(1):
            if self._closed:
                return
            await asyncio.sleep(RESTART.delay(attempt))
            try:
                await self._spawn(host)
                break
            except (EngineUnavailable, OSError):
                log.exception("engine host restart failed", extra={"host": host.index})
        for account_id, kind in lost.items():
            if kind == "session":
                self._tasks.spawn(self._reopen(account_id), name=f"reopen:{account_id}")

    def _retry_later(self, account_id: str) -> None:
        attempt = self._retries.get(account_id, 0) + 1
        self._retries[account_id] = attempt

        async def later() -> None:
            await asyncio.sleep(RECONNECT.delay(attempt))
            await self._reopen(account_id)

        self._tasks.spawn(later(), name=f"retry:{account_id}")

    async def _reopen(self, account_id: str) -> None:
        if self._reopen_session is not None:
            reason = await self._reopen_session(account_id)
            if reason is not None:
                self._retries.pop(account_id, None)
            return
        blob = self._blobs.get(account_id)
        if blob is not None:
            await self.connect(account_id, blob)

    # -- requests ------------------------------------------------------------------------------

    def _place(self, account_id: str) -> _Host:
        host = self._where.get(account_id)
        if host is None:
            host = min(self._hosts, key=lambda h: (len(h.accounts), h.index))
            self._where[account_id] = host
        return host

    async def _send(self, host: _Host, frame: frames.Frame) -> None:
        proc = host.proc
        if proc is None or proc.stdin is None:
            raise EngineUnavailable("the engine host is not running")
        async with host.write_lock:
            proc.stdin.write(frames.encode(frame))
            await proc.stdin.drain()

    async def _call(self, host: _Host, frame: frames.Frame) -> Any:
        if self._closed:
            raise EngineUnavailable("the engine is closed")
        try:
            async with asyncio.timeout(self.call_timeout):
                await host.up.wait()
                rid = next(self._ids)
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                host.pending[rid] = future
                try:
                    await self._send(host, {**frame, "id": rid})
                    return await future
                finally:
                    host.pending.pop(rid, None)
        except TimeoutError as exc:
            raise EngineTimeout(f"engine host did not answer {frame['op']!r} in time") from exc
        except (ConnectionError, BrokenPipeError) as exc:
            raise EngineUnavailable("the engine host is gone") from exc

    async def link(self, account_id: str, method: LinkMethod, phone: str | None) -> None:
        host = self._place(account_id)
        host.accounts[account_id] = "link"
        frame = {"op": "link", "account": account_id, "method": method.value, "phone": phone}
        await self._call(host, frame)

    async def cancel_link(self, account_id: str) -> None:
        await self._release(account_id, "cancel_link")

    async def connect(self, account_id: str, credentials: bytes) -> None:
        try:
            text = credentials.decode()
        except UnicodeDecodeError as exc:
            raise EngineUnavailable("the credentials are not this engine's") from exc
        host = self._place(account_id)
        host.accounts[account_id] = "session"
        self._blobs[account_id] = credentials
        try:
            await self._call(host, {"op": "connect", "account": account_id, "credentials": text})
        except EngineUnavailable:
            # Refused: the host runs no session for it, so nothing is kept to reopen later.
            host.accounts.pop(account_id, None)
            self._blobs.pop(account_id, None)
            raise

    async def disconnect(self, account_id: str) -> None:
        await self._release(account_id, "disconnect")

    async def logout(self, account_id: str) -> None:
        await self._release(account_id, "logout")
        self._blobs.pop(account_id, None)

    async def _release(self, account_id: str, op: str) -> None:
        self._retries.pop(account_id, None)
        host = self._where.get(account_id)
        if host is None:
            return
        host.accounts.pop(account_id, None)
        await self._call(host, {"op": op, "account": account_id})

    async def send_text(self, account_id: str, to: str, text: str) -> str:
        host = self._where.get(account_id)
        if host is None:
            raise EngineUnavailable("the account's session is not connected")
        frame = {"op": "send_text", "account": account_id, "to": to, "text": text}
        return str(await self._call(host, frame))
