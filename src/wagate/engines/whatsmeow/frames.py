"""The framed protocol between the gateway and its engine hosts: 4-byte length, then JSON.

Pipes carry a byte stream; a length prefix keeps one message from bleeding into the next even
when a library inside the host writes stray bytes (the host moves those to stderr anyway).

Gateway → host, requests: ``{"id": 7, "op": "link", "account": "...", ...arguments}``.
Host → gateway, replies: ``{"id": 7, "ok": true, "result": ...}`` or
``{"id": 7, "ok": false, "error": "..."}``; events: ``{"account": "...", "event": {...}}``
where the event dict is the wire form of an ``EngineEvent`` (see ``neonize_adapter``);
once at start: ``{"hello": true, "pid": 123}`` or ``{"hello": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from typing import IO, Any

from wagate.errors import WagateError

HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024
Frame = dict[str, Any]


class FrameError(WagateError):
    """A frame could not be read: wrong length, not JSON, or not an object."""

    code = "frame_error"


def encode(frame: Frame) -> bytes:
    body = json.dumps(frame, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Frame:
    try:
        frame = json.loads(body)
    except ValueError as exc:
        raise FrameError("frame is not JSON") from exc
    if not isinstance(frame, dict):
        raise FrameError("frame is not a JSON object")
    return frame


def _length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return int(length)


async def read(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header") from exc
        return None
    try:
        body = await reader.readexactly(_length(header))
    except asyncio.IncompleteReadError as exc:
        raise FrameError("stream ended inside a frame") from exc
    return decode(body)


def read_sync(stream: IO[bytes]) -> Frame | None:
    """Blocking ``read`` for the host's side of the pipe."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(stream, _length(header))
    if body is None:
        raise FrameError("stream ended inside a frame")
    return decode(body)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks: list[bytes] = []
    missing = size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            if chunks:
                raise FrameError("stream ended inside a frame")
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


class SyncWriter:
    """Writes whole frames from many threads (Go callbacks arrive on their own threads)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, frame: Frame) -> None:
        data = encode(frame)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()
