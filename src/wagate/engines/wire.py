"""The wire form of an ``EngineEvent``: a JSON object, for engines whose sessions live in another
process (the whatsmeow engine hosts, the shared simulator). Datetimes travel as ISO 8601 text,
bytes as base64."""

from __future__ import annotations

import base64
from dataclasses import fields
from datetime import datetime
from typing import Any

from wagate.engines.base import (
    Banned,
    Connected,
    ConnectFailed,
    CredentialsUpdated,
    Disconnected,
    EngineEvent,
    LinkExpired,
    LoggedOut,
    MessageReceived,
    MessageStatus,
    Outdated,
    PairCode,
    Paired,
    PairFailed,
    QrCode,
    Replaced,
)

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        QrCode, PairCode, LinkExpired, Paired, PairFailed, Connected, Disconnected, LoggedOut,
        Replaced, Banned, Outdated, ConnectFailed, CredentialsUpdated, MessageReceived,
        MessageStatus,
    )
}  # fmt: skip


def to_wire(event: EngineEvent) -> dict[str, Any]:
    wire: dict[str, Any] = {"type": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        wire[f.name] = value
    return wire


def from_wire(wire: dict[str, Any]) -> EngineEvent:
    """The event back; ValueError for an unknown type."""
    cls = _TYPES.get(str(wire.get("type")))
    if cls is None:
        raise ValueError(f"unknown engine event type {wire.get('type')!r}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        value = wire.get(f.name)
        kind = str(f.type)
        if value is not None and kind.startswith("datetime"):
            value = datetime.fromisoformat(value)
        elif value is not None and kind == "bytes":
            value = base64.b64decode(value)
        values[f.name] = value
    event: EngineEvent = cls(**values)
    return event
