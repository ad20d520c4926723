"""Reading log files one line at a time and telling what each line is.

A line is an ``Entry`` (wagate's JSON, winston's JSON, winston's ``level: message {json}`` text,
or a ``[winston] ... {json}`` notice that still carries its record) or one of the things found
between entries: stack-trace lines, indented continuations, blanks, NUL padding left by log
rotation, winston notices without a record, and text nothing here understands.

Files are read in binary with a cap on line length, so neither a huge file nor a file without
newlines is ever held in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from wagate.doctor import DoctorError

MAX_LINE = 1 << 20  # longer lines are cut; the rest of such a line is skipped
Format = Literal["auto", "wagate", "winston"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One log record."""

    line: int
    ts: datetime | None
    level: str
    message: str
    fields: Mapping[str, Any]
    source: Literal["wagate", "winston"]


class LineKind(StrEnum):
    BLANK = "blank"  # empty, or whitespace only
    PADDING = "padding"  # nothing but NUL bytes (a file truncated under a writer)
    INDENTED = "indented"  # a stack frame, or the continuation of a record printed on many lines
    EXCEPTION = "exception"  # "TypeError: ...": the head of a stack trace
    EXIT = "exit"  # "Node.js v22.1.0": node printed it after an uncaught error, then exited
    NOTICE = "notice"  # "[winston] ..." without a record
    OTHER_FORMAT = "other_format"  # an entry of the format the user did not ask for
    TEXT = "text"  # anything else


@dataclass(frozen=True, slots=True)
class Other:
    line: int
    kind: LineKind
    text: str


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVELS = "error|warn|warning|info|http|verbose|debug|silly|notice|crit|alert|emerg"
_WINSTON_TEXT = re.compile(
    rf"^(?:(?P<ts>\d{{4}}-\d\d-\d\d[T ][0-9:.]+(?:Z|[+-]\d\d:?\d\d)?)\s+)?"
    rf"(?P<level>{_LEVELS}):\s?(?P<rest>.*)$"
)
_WINSTON_NOTICE = re.compile(r"^\[winston\] ")
_EXCEPTION = re.compile(
    r"^(?:Uncaught |\(node:\d+\) )?(?:[A-Z][\w$]*)?(?:Error|Exception|Rejection\w*)\b"
    r"(?: \[[A-Z0-9_]+\])?:|^FATAL ERROR:"
)
_EXIT = re.compile(r"^Node\.js v\d+")
_CLOSERS = frozenset({"}", "]", ")", "{", "[", "})", "}]"})


def timestamp(value: Any) -> datetime | None:
    """ISO-8601 text, or Unix seconds or milliseconds, as an aware UTC datetime."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _split_meta(rest: str) -> tuple[str, dict[str, Any]]:
    """``message {json}`` -> (message, fields); a message may itself contain braces."""
    start = rest.find(" {")
    while start != -1:
        meta = _object(rest[start + 1 :])
        if meta is not None:
            return rest[:start], meta
        start = rest.find(" {", start + 1)
    if rest.startswith("{") and (meta := _object(rest)) is not None:
        return "", meta
    return rest, {}


def _winston_json(line: int, data: Mapping[str, Any]) -> Entry:
    return Entry(
        line,
        timestamp(data.get("timestamp")),
        str(data.get("level", "")).lower(),
        str(data.get("message", "")),
        data,
        "winston",
    )


def _json_line(line: int, text: str, fmt: Format) -> Entry | Other:
    data = _object(text)
    if data is None:
        return Other(line, LineKind.TEXT, text)
    if "msg" in data and "logger" in data:
        if fmt == "winston":
            return Other(line, LineKind.OTHER_FORMAT, text)
        level = str(data.get("level", "")).lower()
        return Entry(line, timestamp(data.get("ts")), level, str(data["msg"]), data, "wagate")
    if "message" in data and "level" in data:
        if fmt == "wagate":
            return Other(line, LineKind.OTHER_FORMAT, text)
        return _winston_json(line, data)
    return Other(line, LineKind.TEXT, text)


def _text_line(line: int, text: str, fmt: Format) -> Entry | Other:
    if _WINSTON_NOTICE.match(text):
        _, meta = _split_meta(text)
        if "message" not in meta:
            return Other(line, LineKind.NOTICE, text)
        if fmt == "wagate":
            return Other(line, LineKind.OTHER_FORMAT, text)
        return _winston_json(line, meta)
    match = _WINSTON_TEXT.match(text)
    if match is None:
        return Other(line, _shape(text), text)
    if fmt == "wagate":
        return Other(line, LineKind.OTHER_FORMAT, text)
    message, meta = _split_meta(match.group("rest"))
    ts = timestamp(match.group("ts")) or timestamp(meta.get("timestamp"))
    return Entry(line, ts, match.group("level"), message, meta, "winston")


def _shape(text: str) -> LineKind:
    if text[:1].isspace() or text.strip() in _CLOSERS:
        return LineKind.INDENTED
    if _EXIT.match(text):
        return LineKind.EXIT
    if _EXCEPTION.match(text):
        return LineKind.EXCEPTION
    return LineKind.TEXT


def classify(line: int, raw: bytes, fmt: Format) -> Entry | Other:
    """What one physical line (newline removed) is."""
    if b"\0" in raw:
        raw = raw.replace(b"\0", b"")
        if not raw.strip():
            return Other(line, LineKind.PADDING, "")
    text = _ANSI.sub("", raw.decode("utf-8", "replace"))
    if not text.strip():
        return Other(line, LineKind.BLANK, "")
    if text.startswith("{"):
        return _json_line(line, text.rstrip(), fmt)
    return _text_line(line, text.rstrip(), fmt)


def _binary(head: bytes) -> bool:
    sample = head.replace(b"\0", b"")
    if not sample:
        return False
    control = sum(1 for b in sample if b < 9 or (13 < b < 32 and b != 27))
    broken = sample.decode("utf-8", "replace").count("\ufffd")
    return control + max(broken - 3, 0) > len(sample) // 100  # 3: a character cut at the end


def read(path: Path, fmt: Format = "auto") -> Iterator[Entry | Other]:
    """Every line of ``path``, classified, in order; raises DoctorError if it cannot be read."""
    try:
        stream = path.open("rb")
    except IsADirectoryError as exc:
        raise DoctorError(f"{path} is a directory, not a log file") from exc
    except OSError as exc:
        raise DoctorError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with stream:
        if _binary(stream.peek(8192)[:8192]):
            raise DoctorError(f"{path} looks like binary data, not a log")
        number = 0
        while chunk := stream.readline(MAX_LINE):
            number += 1
            if len(chunk) == MAX_LINE and not chunk.endswith(b"\n"):
                while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass  # drop the rest of an overlong line, keep the line count right
            yield classify(number, chunk.rstrip(b"\r\n"), fmt)
