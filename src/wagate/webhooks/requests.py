"""What a webhook request carries, per workspace format (DESIGN §7): body and signed headers.

- ``wagate``: the event envelope; ``X-Wagate-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of
  "<t>.<raw body>">``, and ``X-Wagate-Delivery`` = the event id, the same on every retry.
- ``blazz``: ``{event, data}`` in the names of the service wagate replaces (see
  ``fixtures/blazz``), so its backend switches without changes; ``X-HMAC-Signature`` = hex
  HMAC-SHA256 of the timestamp immediately followed by the raw body, ``X-Timestamp`` in seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from wagate import __version__
from wagate.core.event_types import EventType
from wagate.core.qr import png_data_url

WebhookFormat = Literal["wagate", "blazz"]
USER_AGENT = f"wagate/{__version__}"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One POST: the raw body and its headers (the signature covers exactly these bytes)."""

    body: bytes
    headers: dict[str, str]


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def wagate_request(envelope: dict[str, Any], secret: str, timestamp: int) -> Outgoing:
    body = _json(envelope)
    signature = hmac_hex(secret, f"{timestamp}.".encode() + body)
    return Outgoing(
        body,
        {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Wagate-Event": str(envelope["type"]),
            "X-Wagate-Delivery": str(envelope["id"]),
            "X-Wagate-Signature": f"t={timestamp},v1={signature}",
        },
    )


def _session(envelope: dict[str, Any]) -> dict[str, Any]:
    # blazz named an account a session; its id is the account id.
    return {"session_id": envelope["account_id"], "workspace_id": envelope["workspace_id"]}


def _qr(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = envelope["data"]
    expires_at = datetime.fromisoformat(data["expires_at"])
    shown_at = datetime.fromisoformat(envelope["created_at"])
    return "qr_code_generated", {
        **_session(envelope),
        "qr_code": png_data_url(data["code"]),
        "expires_in": max(0, round((expires_at - shown_at).total_seconds())),
        "qr_count": int(data["index"]) + 1,
    }


def _paired(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = envelope["data"]
    return "session_authenticated", {**_session(envelope), "phone_number": data.get("phone")}


def _connected(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = envelope["data"]
    ready = {"phone_number": data.get("phone"), "status": "connected"}
    return "session_ready", {**_session(envelope), **ready}


def _disconnected(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    reason = envelope["data"].get("reason")
    return "session_disconnected", {**_session(envelope), "reason": reason}


def _link_failed(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    data = envelope["data"]
    # Expired, cancelled, superseded or interrupted attempts were no error in blazz's terms.
    if data.get("outcome") != "failed":
        return None
    reason = data.get("reason")
    return "session_error", {**_session(envelope), "error": reason, "reason": reason}


def _message(name: str) -> Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]:
    def translate(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return name, {**envelope["data"], **_session(envelope)}

    return translate


_BLAZZ: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None]] = {
    EventType.LINK_QR: _qr,
    EventType.LINK_PAIRED: _paired,
    EventType.SESSION_CONNECTED: _connected,
    EventType.SESSION_DISCONNECTED: _disconnected,
    EventType.SESSION_LOGGED_OUT: _disconnected,
    EventType.LINK_FAILED: _link_failed,
    EventType.MESSAGE_RECEIVED: _message("message_received"),
    EventType.MESSAGE_STATUS: _message("message_status_updated"),
}


def blazz_request(envelope: dict[str, Any], secret: str, timestamp: int) -> Outgoing | None:
    """The blazz request, or None for an event blazz had no name for (the dispatcher then marks
    it delivered without sending: ``account.status``, ``link.started``, ``link.pair_code``,
    ``link.succeeded`` and non-error ``link.failed`` have no blazz equivalent)."""
    translate = _BLAZZ.get(envelope["type"])
    translated = translate(envelope) if translate is not None else None
    if translated is None:
        return None
    name, data = translated
    body = _json({"event": name, "data": data})
    stamp = str(timestamp)
    return Outgoing(
        body,
        {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-HMAC-Signature": hmac_hex(secret, stamp.encode() + body),
            "X-Timestamp": stamp,
            # Not read by a blazz backend; lets any receiver drop a retried duplicate.
            "X-Wagate-Delivery": str(envelope["id"]),
        },
    )


def build(fmt: str, envelope: dict[str, Any], secret: str, timestamp: int) -> Outgoing | None:
    """The request for ``envelope`` in the workspace's format; None: nothing to send."""
    if fmt == "blazz":
        return blazz_request(envelope, secret, timestamp)
    return wagate_request(envelope, secret, timestamp)
