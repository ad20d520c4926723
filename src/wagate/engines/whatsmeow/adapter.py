"""What neonize (whatsmeow) reports, mapped to wagate's ``EngineEvent``s; pure, no I/O.

The mapping reads neonize's protobuf messages by their descriptor names, so this module never
imports neonize: the gateway reads its events in their wire form (``wagate.engines.wire``)
without loading the Go library, and the engine host feeds it the messages its clients dispatch.

Facts the mapping relies on (neonize 0.5.2 over whatsmeow): QR codes reach a callback one at a
time, the first valid 60 s and each next one 20 s; the QR flow's outcomes ("success", "timeout",
"err-client-outdated", ...) reach a separate login-status callback, not the event stream; a
pairing reaches the event stream as ``PairStatus``; a failed dial is an error string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

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

FIRST_QR_SECONDS = 60.0
NEXT_QR_SECONDS = 20.0
LINK_SECONDS = FIRST_QR_SECONDS + 5 * NEXT_QR_SECONDS
Mode = Literal["qr", "code", "session"]
Clock = Callable[[], datetime]

# -- credentials: a small blob naming whatsmeow's own store --------------------------------------


def credentials_blob(store: str, jid: str) -> bytes:
    """What wagate's auth store keeps: where whatsmeow's store is and which device in it."""
    return json.dumps({"engine": "whatsmeow", "store": store, "jid": jid}).encode()


def read_credentials(blob: bytes) -> tuple[str, str]:
    """``(store, jid)`` from a blob; ValueError when it is not a whatsmeow blob."""
    try:
        data = json.loads(blob)
        if data.get("engine") != "whatsmeow":
            raise ValueError("credentials of another engine")
        return str(data["store"]), str(data["jid"])
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError("not whatsmeow credentials") from exc


# -- connect errors -----------------------------------------------------------------------------

_ERROR_REASONS: tuple[tuple[str, str], ...] = (
    (r"no such host|misbehaving|network is unreachable|no route to host", "network_unreachable"),
    (r"connection refused", "connection_refused"),
    (r"i/o timeout|deadline exceeded|timed out", "connect_timeout"),
    (r"tls|x509|certificate", "tls_error"),
    (r"websocket", "websocket_error"),
)  # fmt: skip


def connect_error_reason(text: str) -> str:
    """A stable reason for a dial error string (never the raw text: it may carry addresses)."""
    lowered = text.lower()
    for pattern, reason in _ERROR_REASONS:
        if re.search(pattern, lowered):
            return reason
    return "connect_error"


# -- neonize messages ---------------------------------------------------------------------------


def _enum_name(message: Any, field_name: str) -> str:
    value = getattr(message, field_name)
    enum = message.DESCRIPTOR.fields_by_name[field_name].enum_type
    number = enum.values_by_number.get(value)
    return str(number.name).lower() if number is not None else f"code_{value}"


def jid_text(jid: Any) -> str:
    user, server = str(jid.User), str(jid.Server) or "s.whatsapp.net"
    return f"{user}:{jid.Device}@{server}" if jid.Device else f"{user}@{server}"


def message_text(message: Any) -> str:
    """The text of a WhatsApp message: plain, extended, or a media caption."""
    if message.conversation:
        return str(message.conversation)
    for holder, attr in (
        ("extendedTextMessage", "text"),
        ("imageMessage", "caption"),
        ("videoMessage", "caption"),
        ("documentMessage", "caption"),
    ):
        if message.HasField(holder):
            return str(getattr(getattr(message, holder), attr))
    return ""


_LOGGED_OUT_REASONS = {"logged_out": "logged_out_from_phone"}
_RETRYABLE_FAILURES = {"generic", "internal_server_error", "service_unavailable", "experimental"}
_RECEIPTS = {"delivered": "delivered", "read": "read", "played": "read", "server_error": "failed"}
_LOGIN_STATUSES: dict[str, EngineEvent | None] = {
    "success": None,  # the pairing itself arrives as PairStatus on the event stream
    "timeout": LinkExpired(),
    "err-client-outdated": Outdated(),
    "err-scanned-without-multidevice": PairFailed("scanned_without_multidevice"),
    "err-unexpected-state": PairFailed("unexpected_state"),
    "error": PairFailed("pair_error"),
}


def _now() -> datetime:
    return datetime.now(UTC)


class SessionAdapter:
    """One client's reports → EngineEvents, for a link (``qr``/``code``) or a stored session."""

    def __init__(self, mode: Mode, store: str, *, clock: Clock = _now) -> None:
        self.mode = mode
        self.store = store
        self.clock = clock
        self.started = clock()
        self.qr_index = 0

    def qr(self, code: str) -> list[EngineEvent]:
        if self.mode != "qr":
            return []  # in a pairing-code link the QR rotation only keeps the link open
        lifetime = FIRST_QR_SECONDS if self.qr_index == 0 else NEXT_QR_SECONDS
        event = QrCode(code, self.qr_index, self.clock() + timedelta(seconds=lifetime))
        self.qr_index += 1
        return [event]

    def pair_code(self, code: str) -> list[EngineEvent]:
        raw = code.replace("-", "").upper()
        shown = f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else code
        return [PairCode(shown, self.started + timedelta(seconds=LINK_SECONDS))]

    def login_status(self, status: str) -> list[EngineEvent]:
        if status in _LOGIN_STATUSES:
            event = _LOGIN_STATUSES[status]
            return [] if event is None else [event]
        return [PairFailed(f"login_{re.sub(r'[^a-z0-9]+', '_', status.lower())[:40]}")]

    def connect_error(self, text: str) -> list[EngineEvent]:
        return [ConnectFailed(connect_error_reason(text), retryable=True)]

    def event(self, message: Any) -> list[EngineEvent]:
        """Map one dispatched neonize event; unknown kinds map to nothing."""
        handler = getattr(self, f"_on_{message.DESCRIPTOR.name}", None)
        return [] if handler is None else list(handler(message))

    def _on_PairStatus(self, m: Any) -> list[EngineEvent]:  # noqa: N802 - proto names
        if _enum_name(m, "Status") != "success":
            return [PairFailed("pair_error")]
        jid = jid_text(m.ID)
        blob = credentials_blob(self.store, jid)
        return [Paired(phone=str(m.ID.User), jid=jid, platform=str(m.Platform) or "unknown"),
                CredentialsUpdated(blob)]  # fmt: skip

    def _on_Connected(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        return [Connected()]

    def _on_Disconnected(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        # whatsmeow reconnects by itself after an unexpected drop.
        return [Disconnected("connection_lost", will_retry=True)]

    def _on_LoggedOut(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        reason = _enum_name(m, "Reason")
        return [LoggedOut(_LOGGED_OUT_REASONS.get(reason, reason))]

    def _on_StreamReplaced(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        return [Replaced()]

    def _on_TemporaryBan(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        until = self.clock() + timedelta(seconds=int(m.Expire)) if m.Expire else None
        return [Banned(_enum_name(m, "Code"), until)]

    def _on_ClientOutdated(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        return [Outdated()]

    def _on_ConnectFailure(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        reason = _enum_name(m, "Reason")
        if reason == "client_outdated":
            return [Outdated()]
        if reason in ("logged_out", "main_device_gone", "unknown_logout"):
            return [LoggedOut(_LOGGED_OUT_REASONS.get(reason, reason))]
        if reason == "temp_banned":
            return [Banned("temp_banned", None)]
        return [ConnectFailed(f"server_{reason}", retryable=reason in _RETRYABLE_FAILURES)]

    def _on_Message(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        source = m.Info.MessageSource
        if source.IsFromMe:
            return []
        stamp = datetime.fromtimestamp(int(m.Info.Timestamp), UTC) if m.Info.Timestamp else None
        return [MessageReceived(
            wa_id=str(m.Info.ID), chat=jid_text(source.Chat), sender=jid_text(source.Sender),
            text=message_text(m.Message), timestamp=stamp or self.clock(),
        )]  # fmt: skip

    def _on_Receipt(self, m: Any) -> list[EngineEvent]:  # noqa: N802
        status = _RECEIPTS.get(_enum_name(m, "Type"))
        if status is None:
            return []
        return [MessageStatus(str(wa_id), status) for wa_id in m.MessageIDs]


# Events after which whatsmeow will not carry on by itself: the host closes the client.
TERMINAL: tuple[type[Any], ...] = (LoggedOut, Replaced, Banned, Outdated, LinkExpired, PairFailed)
