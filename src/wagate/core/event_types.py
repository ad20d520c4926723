"""The types of the events wagate records and delivers (DESIGN §7, contract)."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Event types (contract)."""

    ACCOUNT_STATUS = "account.status"
    LINK_STARTED = "link.started"
    LINK_QR = "link.qr"
    LINK_PAIR_CODE = "link.pair_code"
    LINK_PAIRED = "link.paired"
    LINK_SUCCEEDED = "link.succeeded"
    LINK_FAILED = "link.failed"
    SESSION_CONNECTED = "session.connected"
    SESSION_DISCONNECTED = "session.disconnected"
    SESSION_LOGGED_OUT = "session.logged_out"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_STATUS = "message.status"
