"""Logging set-up: one JSON object per line, or plain text; structured fields either way."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class WagateMessage(StrEnum):
    """Messages of wagate's own log records that ``wagate doctor logs`` reads back.

    wagate logs with these members, so the logger and the doctor cannot drift apart.
    """

    # logger wagate.sessions; fields account_id, attempt_id, method
    ATTEMPT_STARTED = "link attempt started"
    # account_id, attempt_id, index (the code itself is never logged)
    QR_ISSUED = "qr code issued"
    # account_id, attempt_id
    PHONE_PAIRED = "phone paired"
    # account_id, attempt_id, reason,
    # outcome: linked|expired|cancelled|failed|superseded|interrupted
    ATTEMPT_ENDED = "link attempt ended"
    # account_id
    SESSION_CONNECTED = "session connected"
    # logger wagate.webhooks; event_id, status (int or null), error (timeout|refused|http_5xx|...)
    WEBHOOK_FAILED = "webhook delivery failed"


# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
# uvicorn's "color_message" is its own message again, with terminal colours.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        return f"{line} {extra}" if extra else line


def configure(fmt: str = "text", level: str = "INFO") -> None:
    """Route wagate's and uvicorn's loggers to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
