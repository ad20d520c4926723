"""The Engine protocol and the events every engine reports (DESIGN §4, contract names)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from wagate.core.states import LinkMethod


@dataclass(frozen=True, slots=True)
class QrCode:
    """A QR code to show; ``index`` counts from 0 within the attempt."""

    code: str
    index: int
    expires_at: datetime

    def __repr__(self) -> str:  # the code is a secret: keep it out of reprs and logs
        return f"QrCode(index={self.index}, expires_at={self.expires_at.isoformat()})"


@dataclass(frozen=True, slots=True)
class PairCode:
    """An 8-character pairing code (``XXXX-XXXX``) for the user to type on the phone."""

    code: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"PairCode(expires_at={self.expires_at.isoformat()})"


@dataclass(frozen=True, slots=True)
class LinkExpired:
    """Every code of the attempt was shown and none was used."""


@dataclass(frozen=True, slots=True)
class Paired:
    """The phone accepted a code; the session is being established."""

    phone: str
    jid: str
    platform: str


@dataclass(frozen=True, slots=True)
class PairFailed:
    """The phone or the server refused the pairing."""

    reason: str


@dataclass(frozen=True, slots=True)
class Connected:
    """The session is ready to send and receive."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection dropped; ``will_retry`` says whether the engine reconnects by itself."""

    reason: str
    will_retry: bool


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The credentials were revoked (from the phone, by the server, ...)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Replaced:
    """Another client took over the same credentials (stream replaced)."""


@dataclass(frozen=True, slots=True)
class Banned:
    """The number is banned; ``until`` is None for a permanent ban."""

    code: str
    until: datetime | None


@dataclass(frozen=True, slots=True)
class Outdated:
    """The server rejected the client version."""


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """A connection could not be established."""

    reason: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class CredentialsUpdated:
    """New credentials to persist; ``blob`` is opaque to everything but its engine."""

    blob: bytes

    def __repr__(self) -> str:
        return f"CredentialsUpdated(<{len(self.blob)} bytes>)"


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An incoming message."""

    wa_id: str
    chat: str
    sender: str
    text: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """A status change of a sent message (``sent``, ``delivered``, ``read``, ``failed``)."""

    wa_id: str
    status: str


EngineEvent = (
    QrCode
    | PairCode
    | LinkExpired
    | Paired
    | PairFailed
    | Connected
    | Disconnected
    | LoggedOut
    | Replaced
    | Banned
    | Outdated
    | ConnectFailed
    | CredentialsUpdated
    | MessageReceived
    | MessageStatus
)

# Engines report through this: (account id, event). It must not block; the SessionManager queues
# the event and applies it in order for that account.
EngineSink = Callable[[str, EngineEvent], None]
# How an engine has a session it lost (a crashed host) reopened: wagate's restoration path for
# that account id, which reads the credentials from the store again and leaves a stopped account
# stopped. Returns None when the session was handed to the engine, else the reason it was not.
Reopen = Callable[[str], Awaitable[str | None]]


class Engine(Protocol):
    """What the SessionManager needs from an engine; one instance serves many accounts.

    Every method is keyed by the account id, so a session can never be opened for the wrong
    account. Calls return once the engine has taken the command; outcomes arrive as events.
    """

    name: str

    async def start(self, sink: EngineSink, reopen: Reopen | None = None) -> None:
        """Begin reporting events to ``sink``; ``reopen`` reopens a session the engine lost
        (an engine that never loses one may ignore it)."""

    async def close(self) -> None:
        """Stop every session, keeping credentials; idempotent."""

    def healthy(self) -> bool:
        """Whether the engine can take commands."""

    async def link(self, account_id: str, method: LinkMethod, phone: str | None) -> None:
        """Start a link: QR codes (``qr``) or a pairing code for ``phone`` (``code``)."""

    async def cancel_link(self, account_id: str) -> None:
        """Abandon the account's link in progress; no further link events for it."""

    async def connect(self, account_id: str, credentials: bytes) -> None:
        """Open the session from stored credentials (restoration, start, reconnect)."""

    async def disconnect(self, account_id: str) -> None:
        """Close the session keeping its credentials valid."""

    async def logout(self, account_id: str) -> None:
        """Revoke the credentials with the server and close the session."""

    async def send_text(self, account_id: str, to: str, text: str) -> str:
        """Send a text message; returns the WhatsApp message id."""
