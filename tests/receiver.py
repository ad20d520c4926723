"""A real webhook receiver on 127.0.0.1 for tests, and signature verifiers written from
DESIGN §7 alone (they share no code with ``wagate.webhooks``).

The receiver speaks plain HTTP/1.1 with keep-alive over ``asyncio.start_server``; it records
every request and answers with the status that ``respond`` chooses. It can be stopped and
started again on the same port, so a test can take "the backend" down and bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_AGE = 300  # seconds: receivers reject a signature older than five minutes (DESIGN §7)


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the receiver answered
    started: float = 0.0  # monotonic: when the request had been read
    at: float = field(default_factory=time.time)
    ended: float = field(default_factory=time.monotonic)  # when the answer was chosen

    def json(self) -> Any:
        return json.loads(self.body)


def verify_wagate(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """``X-Wagate-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``."""
    items = headers.get("x-wagate-signature", "").split(",")
    parts = dict(item.split("=", 1) for item in items if "=" in item)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if now - stamp > MAX_AGE:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def verify_blazz(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """``X-HMAC-Signature`` = hex HMAC-SHA256(secret, timestamp + raw body), ``X-Timestamp``."""
    stamp = headers.get("x-timestamp", "")
    if not stamp.isdigit() or now - int(stamp) > MAX_AGE:
        return False
    expected = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-hmac-signature", ""))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """``respond(request_number, headers, body) -> status``; the default answers 200.
    ``hold(request_number) -> seconds`` delays the answer (a slow or silent backend)."""

    def __init__(
        self,
        respond: Callable[[int, dict[str, str], bytes], int] | None = None,
        port: int | None = None,
        hold: Callable[[int], float] | None = None,
    ) -> None:
        self.respond = respond or (lambda n, h, b: 200)
        self.hold = hold
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.active = 0  # requests being answered now
        self.max_active = 0
        self._numbered = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Close the port and every open connection: the sender then sees a refused port."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver condition not met; {len(self.requests)} requests")
            await asyncio.sleep(0.02)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        _method, path, _version = line.decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, value = raw.decode().split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        started, number = time.monotonic(), self._numbered
        self._numbered += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.hold is not None:
                await asyncio.sleep(self.hold(number))
        finally:
            self.active -= 1
        status = self.respond(number, headers, body)
        self.requests.append(Received(path, headers, body, status, started))
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        return True
