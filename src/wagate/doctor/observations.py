"""What a log entry says about linking and webhooks, for wagate's own logs and for winston's.

``WagateMessage`` (defined in ``wagate.logs``) holds the messages wagate logs for link attempts
and webhook deliveries; wagate's code logs with these members
(``log.info(WagateMessage.QR_ISSUED, extra=...)``) so that the doctor and the logger cannot
drift apart. Matching is on the message alone, not on the logger's name.

For winston logs of whatsapp-web.js services the patterns below follow the messages such services
log (``Creating WhatsApp session``, ``QR code generated``, ``WhatsApp session authenticated``,
``WhatsApp session ready``, ``WhatsApp session disconnected``, ``Failed to send data to ...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from wagate.doctor.lines import Entry
from wagate.logs import WagateMessage

SESSIONS_LOGGER = "wagate.sessions"
WEBHOOKS_LOGGER = "wagate.webhooks"


class Kind(StrEnum):
    CREATED = "created"  # a session (winston) or a link attempt (wagate) starts
    RESTORED = "restored"  # a session is restored from stored credentials: not a link attempt
    QR = "qr"
    AUTHENTICATED = "authenticated"  # winston "authenticated", wagate "phone paired"
    READY = "ready"
    DISCONNECTED = "disconnected"
    FAILED = "failed"  # authentication failure, or the session could not be created
    ERROR = "error"  # another error-level record of the session
    ENDED = "ended"  # wagate: the attempt ended with an explicit outcome
    WEBHOOK_FAILED = "webhook_failed"


@dataclass(frozen=True, slots=True)
class Observation:
    """What one log line says about a link attempt, a session or a webhook."""

    kind: Kind
    key: str | None  # winston: the session id; wagate: the attempt id (account id if connected)
    line: int
    ts: datetime | None
    outcome: str | None = None
    reason: str | None = None
    cause: str | None = None  # webhook failures: timeout, refused, http_4xx, ..., other, unknown
    account: str | None = None  # wagate: the account an attempt belongs to


_TIMEOUT = re.compile(r"timeout|timed out|etimedout|esockettimedout|econnaborted", re.I)
_REFUSED = re.compile(r"econnrefused|refused", re.I)
_STATUS = re.compile(r"status(?: code)?\s*:?\s*(\d{3})\b", re.I)
_HTTP_CLASS = re.compile(r"^http_[1-5]xx$")


def webhook_cause(error: Any, status: Any) -> str:
    """The cause of a failed delivery from the error text and HTTP status a line gives."""
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return f"http_{status // 100}xx"
    if isinstance(error, Mapping):
        error = " ".join(str(error.get(k, "")) for k in ("code", "message"))
    text = str(error).strip() if error is not None else ""
    if not text:
        return "unknown"
    if _HTTP_CLASS.match(text):
        return text
    if match := _STATUS.search(text):
        return f"http_{match.group(1)[0]}xx"
    if _TIMEOUT.search(text):  # a connect timeout (ETIMEDOUT) too: the receiver never answered
        return "timeout"
    if _REFUSED.search(text):
        return "refused"
    return "other"


def _wagate(entry: Entry) -> Observation | None:
    f, msg = entry.fields, entry.message
    attempt = str(f["attempt_id"]) if f.get("attempt_id") is not None else None
    account = str(f["account_id"]) if f.get("account_id") is not None else None
    match msg:
        case WagateMessage.ATTEMPT_STARTED:
            return Observation(Kind.CREATED, attempt, entry.line, entry.ts, account=account)
        case WagateMessage.QR_ISSUED:
            return Observation(Kind.QR, attempt, entry.line, entry.ts)
        case WagateMessage.PHONE_PAIRED:
            return Observation(Kind.AUTHENTICATED, attempt, entry.line, entry.ts)
        case WagateMessage.ATTEMPT_ENDED:
            outcome = str(f["outcome"]) if f.get("outcome") else None
            reason = str(f["reason"]) if f.get("reason") else None
            return Observation(Kind.ENDED, attempt, entry.line, entry.ts, outcome, reason)
        case WagateMessage.SESSION_CONNECTED:
            return Observation(Kind.READY, account, entry.line, entry.ts)
        case WagateMessage.WEBHOOK_FAILED:
            cause = webhook_cause(f.get("error"), f.get("status"))
            return Observation(Kind.WEBHOOK_FAILED, None, entry.line, entry.ts, cause=cause)
    return None


_WINSTON: tuple[tuple[re.Pattern[str], Kind], ...] = tuple(
    (re.compile(pattern, re.I), kind)
    for pattern, kind in (
        (
            r"^failed to send (?:data|webhook)\b|webhook notification failed permanently",
            Kind.WEBHOOK_FAILED,
        ),
        (r"^creat(?:e|ing) (?:a )?(?:new )?(?:whatsapp )?(?:session|client)\b", Kind.CREATED),
        (
            r"^(?:attempting to )?restor(?:e|ing) (?:existing )?(?:whatsapp )?session\b",
            Kind.RESTORED,
        ),
        (r"^qr(?: code)? (?:generated|received)\b", Kind.QR),
        (r"^(?:whatsapp )?(?:session |client )?authenticated\b", Kind.AUTHENTICATED),
        (r"^(?:whatsapp )?(?:session |client )?(?:is )?ready\b", Kind.READY),
        (r"^(?:whatsapp )?(?:session |client )?auth(?:entication)?[ _]?fail", Kind.FAILED),
        (
            r"^failed to (?:create|initiali[sz]e|start) (?:whatsapp )?(?:session|client)\b",
            Kind.FAILED,
        ),
        (r"^(?:whatsapp )?(?:session |client )?disconnected\b", Kind.DISCONNECTED),
    )
)
_SESSION_KEYS = ("sessionId", "session_id", "clientId", "client_id")
_LEAD = re.compile(r"^[^\w\[]+")  # emoji and punctuation some services put before the message
_ERROR_LEVELS = frozenset({"error", "crit", "alert", "emerg"})


def session_of(fields: Mapping[str, Any]) -> str | None:
    for key in _SESSION_KEYS:
        value = fields.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _winston(entry: Entry) -> Observation | None:
    message = _LEAD.sub("", entry.message.strip())
    for pattern, kind in _WINSTON:
        if pattern.search(message):
            if kind is Kind.WEBHOOK_FAILED:
                f = entry.fields
                status = f.get("status", f.get("statusCode"))
                cause = webhook_cause(f.get("error"), status)
                return Observation(kind, None, entry.line, entry.ts, cause=cause)
            why = entry.fields.get("reason")
            reason = str(why) if why is not None else None
            return Observation(kind, session_of(entry.fields), entry.line, entry.ts, reason=reason)
    if entry.level in _ERROR_LEVELS and (session := session_of(entry.fields)):
        return Observation(Kind.ERROR, session, entry.line, entry.ts)
    return None


def from_entry(entry: Entry) -> Observation | None:
    """The linking or webhook event an entry records, if any."""
    return _wagate(entry) if entry.source == "wagate" else _winston(entry)
