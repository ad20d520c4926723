"""Generated service logs whose ground truth is known by construction.

``generate(seed)`` writes the records of several actors, interleaved at random: winston sessions
(created, re-created, abandoned at the QR code, authenticated but never ready, failed,
disconnected, linked, left open at the end), restored sessions, wagate link attempts with every
outcome, orphan events of sessions never created, webhook failures of every cause, and noise:
chatter entries, stack traces, node crashes, ``[winston]`` notices, NUL padding, junk text. Each
winston record is written as text or as JSON at random. ``Truth`` holds what the doctor must count.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2025, 11, 15, 4, 0, tzinfo=UTC)

WEBHOOK_ERRORS = {
    "timeout": ["timeout of 10000ms exceeded", "connect ETIMEDOUT 10.0.0.7:8000"],
    "refused": ["connect ECONNREFUSED 127.0.0.1:8000"],
    "http_4xx": ["Request failed with status code 429", "Request failed with status code 404"],
    "http_5xx": ["Request failed with status code 500", "Request failed with status code 502"],
    "other": ["write EPIPE", "socket hang up", "getaddrinfo ENOTFOUND laravel"],
}
WAGATE_WEBHOOK: dict[str, dict[str, Any]] = {
    "timeout": {"error": "timeout", "status": None},
    "refused": {"error": "refused", "status": None},
    "http_4xx": {"error": "http_4xx", "status": 410},
    "http_5xx": {"error": "http_5xx", "status": 503},
    "other": {"error": "tls", "status": None},
    "unknown": {"status": None},
}
CRASH = [
    "node:events:495",
    "      throw er; // Unhandled 'error' event",
    "      ^",
    "",
    "Error: listen EADDRINUSE: address already in use :::3001",
    "    at Server.setupListenHandle [as _listen2] (node:net:1817:16)",
    "    at listenInCluster (node:net:1865:12)",
    "Emitted 'error' event on Server instance at:",
    "  code: 'EADDRINUSE',",
    "}",
    "",
    "Node.js v20.11.1",
]
TRACE = [
    "TypeError: Cannot read properties of undefined (reading 'wid')",
    "    at Client.inject (/app/node_modules/whatsapp-web.js/src/Client.js:237:50)",
    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
]
JUNK = ["#@! garbage ~~ 7f3a", "Segmentation fault (core dumped)", "%%%% ???? %%%%"]


@dataclass
class Truth:
    attempts: int = 0
    qr_codes: int = 0
    first_qr: int = 0
    authenticated: int = 0
    ready: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    webhook: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    restorations: Counter[str] = field(default_factory=Counter)
    lines: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    exceptions: int = 0
    seconds: dict[str, list[float]] = field(
        default_factory=lambda: {"first_qr": [], "authenticated": [], "ready": []}
    )


@dataclass
class Record:
    """One entry to write; ``stage`` ties it to the attempt whose timing it marks."""

    source: str  # winston or wagate
    message: str
    level: str = "info"
    fields: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, datetime] | None = None
    stage: str | None = None


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.truth = Truth()
        self.actors: list[list[Record]] = []
        self.timings: list[dict[str, datetime]] = []

    def winston(self, message: str, level: str = "info", **fields: Any) -> Record:
        return Record("winston", message, level, fields)

    def count(self, outcome: str, qr: int, auth: bool, ready: bool) -> None:
        t = self.truth
        t.attempts += 1
        t.qr_codes += qr
        t.first_qr += qr > 0
        t.authenticated += auth
        t.ready += ready
        t.outcomes[outcome] += 1
        if outcome == "unknown":
            t.unknown["attempts"] += 1

    def session(self, sid: str) -> None:
        rng, records = self.rng, []
        n = rng.randint(1, 4)
        for i in range(n):
            last = i == n - 1
            kinds = (
                ["linked", "failed", "disconnected", "unknown"]
                if last
                else ["linked", "failed", "disconnected", "qr_not_scanned", "no_qr", "not_ready"]
            )
            outcome = rng.choice(kinds)
            timing: dict[str, datetime] = {}
            self.timings.append(timing)
            rec = self.winston("Creating WhatsApp session", sessionId=sid, workspaceId=1)
            rec.timing, rec.stage = timing, "created"
            records.append(rec)
            qr = 0 if outcome == "no_qr" else rng.randint(1 if outcome != "failed" else 0, 6)
            for k in range(qr):
                rec = self.winston("QR code generated", sessionId=sid, workspaceId=1)
                if k == 0:
                    rec.timing, rec.stage = timing, "first_qr"
                records.append(rec)
                if rng.random() < 0.3:
                    records.append(self.winston("Message received", "debug", sessionId=sid))
            auth = outcome in ("linked", "not_ready") or (
                outcome in ("failed", "disconnected", "unknown") and qr > 0 and rng.random() < 0.5
            )
            if auth:
                rec = self.winston("WhatsApp session authenticated", sessionId=sid)
                rec.timing, rec.stage = timing, "authenticated"
                records.append(rec)
            if outcome == "linked":
                rec = self.winston(
                    "WhatsApp session ready", sessionId=sid, phoneNumber="62990000001"
                )
                rec.timing, rec.stage = timing, "ready"
                records.append(rec)
                if rng.random() < 0.5:  # an error of a linked session changes nothing
                    records.append(self.winston("Batch sync failed", "error", session_id=sid))
                if rng.random() < 0.3:  # nor does a later disconnection
                    records.append(
                        self.winston("WhatsApp session disconnected", "warn", sessionId=sid)
                    )
            elif outcome == "failed":
                message = rng.choice(
                    ["Authentication failure", "Failed to create WhatsApp session"]
                )
                records.append(self.winston(message, "error", sessionId=sid, error="boom"))
            elif outcome == "disconnected":
                records.append(
                    self.winston(
                        "WhatsApp session disconnected", "warn", sessionId=sid, reason="LOGOUT"
                    )
                )
            if rng.random() < 0.2:
                records.append(
                    self.winston("Error in message event handler", "error", sessionId=sid)
                )
            self.count(outcome, qr, auth, outcome == "linked")
        self.actors.append(records)

    def restoration(self, sid: str) -> None:
        records = [self.winston("Attempting to restore existing WhatsApp session", sessionId=sid)]
        records.append(self.winston("WhatsApp session authenticated", sessionId=sid))
        self.truth.restorations["started"] += 1
        if self.rng.random() < 0.7:
            records.append(self.winston("WhatsApp session ready", sessionId=sid))
            self.truth.restorations["ready"] += 1
        self.actors.append(records)

    def wagate_attempt(self, attempt_id: str, account: str) -> None:
        rng = self.rng
        outcome = rng.choice(
            ["linked", "expired", "cancelled", "failed", "superseded", "interrupted", "unknown"]
        )
        timing: dict[str, datetime] = {}
        self.timings.append(timing)
        base = {"account_id": account, "attempt_id": attempt_id}
        first = Record("wagate", "link attempt started", fields={**base, "method": "qr"})
        first.timing, first.stage = timing, "created"
        records = [first]
        qr = rng.randint(1, 6) if outcome in ("linked", "expired") else rng.randint(0, 6)
        for index in range(qr):
            rec = Record("wagate", "qr code issued", fields={**base, "index": index})
            if index == 0:
                rec.timing, rec.stage = timing, "first_qr"
            records.append(rec)
        paired = outcome == "linked" or (outcome in ("failed", "superseded") and rng.random() < 0.5)
        if paired:
            rec = Record("wagate", "phone paired", fields=base)
            rec.timing, rec.stage = timing, "authenticated"
            records.append(rec)
        if outcome == "interrupted":  # the restart sweep knows only the attempt
            end: dict[str, Any] = {
                "attempt_id": attempt_id,
                "outcome": "interrupted",
                "reason": "restart",
            }
            records.append(Record("wagate", "link attempt ended", fields=end))
        elif outcome != "unknown":
            end = {**base, "outcome": outcome, "reason": None if outcome == "linked" else outcome}
            rec = Record("wagate", "link attempt ended", fields=end)
            if outcome == "linked":
                rec.timing, rec.stage = timing, "ready"
            records.append(rec)
        if outcome == "linked":
            records.append(Record("wagate", "session connected", fields={"account_id": account}))
        self.count(outcome, qr, paired, outcome == "linked")
        self.actors.append(records)

    def orphans(self) -> None:
        records = []
        for _ in range(self.rng.randint(0, 4)):
            message = self.rng.choice(["QR code generated", "WhatsApp session ready"])
            records.append(self.winston(message, sessionId=f"orphan-{self.rng.randrange(10**6)}"))
            self.truth.unknown["events"] += 1
        for _ in range(self.rng.randint(0, 2)):
            records.append(self.winston("QR code generated"))  # no session id at all
            self.truth.unknown["events"] += 1
        for _ in range(self.rng.randint(0, 2)):
            fields = {"account_id": "acc-x", "attempt_id": f"never-{self.rng.randrange(10**6)}"}
            records.append(Record("wagate", "qr code issued", fields=fields))
            self.truth.unknown["events"] += 1
        for _ in range(self.rng.randint(0, 2)):  # a reconnect of a linked account: not an event
            records.append(Record("wagate", "session connected", fields={"account_id": "acc-old"}))
        self.actors.append(records)

    def webhooks(self) -> None:
        records = []
        for cause in [*WEBHOOK_ERRORS, "unknown"]:
            for _ in range(self.rng.randint(0, 5)):
                self.truth.webhook[cause] += 1
                if cause == "unknown":
                    self.truth.unknown["webhook_failures"] += 1
                if self.rng.random() < 0.3:
                    fields: dict[str, Any] = {"event_id": "evt", **WAGATE_WEBHOOK[cause]}
                    records.append(Record("wagate", "webhook delivery failed", "warning", fields))
                    continue
                fields = {"event": "message_received"}
                if cause != "unknown":
                    fields["error"] = self.rng.choice(WEBHOOK_ERRORS[cause])
                message = self.rng.choice(
                    [
                        "Failed to send data to Laravel",
                        "[WebhookNotifier] Webhook notification failed permanently",
                    ]
                )
                records.append(self.winston(message, "error", **fields))
        self.actors.append(records)


def _entry(rec: Record, ts: datetime, as_json: bool) -> str:
    stamp = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if rec.source == "wagate":
        line = {
            "ts": ts.isoformat(),
            "level": rec.level,
            "logger": "wagate.sessions",
            "msg": rec.message,
        }
        return json.dumps({**line, **rec.fields})
    fields = {**rec.fields, "service": "whatsapp-service", "timestamp": stamp}
    if as_json:
        return json.dumps({"level": rec.level, "message": rec.message, **fields})
    return f"{rec.level}: {rec.message} {json.dumps(fields, separators=(',', ':'))}"


def generate(seed: int, sessions: int = 6) -> tuple[list[list[bytes]], Truth]:
    """Log files (lists of lines, without newlines) and what they hold."""
    gen = _Gen(seed)
    rng, truth = gen.rng, gen.truth
    for i in range(sessions):
        gen.session(f"webjs_{i}_{rng.randrange(10**9)}")
    for i in range(rng.randint(0, 2)):
        gen.restoration(f"restored_{i}")
    for i in range(rng.randint(1, 5)):
        gen.wagate_attempt(f"att-{i}", f"acc-{i}")  # wagate opens one attempt per account
    gen.orphans()
    gen.webhooks()
    lines: list[bytes] = []
    clock = START
    queues = [list(reversed(a)) for a in gen.actors if a]
    while queues:
        queue = rng.choice(queues)
        rec = queue.pop()
        if not queue:
            queues.remove(queue)
        clock += timedelta(milliseconds=rng.randint(1, 30_000))
        if rec.timing is not None and rec.stage is not None:
            rec.timing[rec.stage] = clock
        _write(gen, rec, clock, lines)
    for timing in gen.timings:
        for stage in ("first_qr", "authenticated", "ready"):
            if stage in timing:
                truth.seconds[stage].append((timing[stage] - timing["created"]).total_seconds())
    truth.lines["total"] = len(lines)
    cut = rng.randrange(len(lines)) if rng.random() < 0.5 else len(lines)
    while cut < len(lines) and not _starts_chunk(lines[cut]):
        cut += 1  # a rotated file begins with a record, never inside a stack trace
    files = [lines[:cut], lines[cut:]] if 0 < cut < len(lines) else [lines]
    return files, truth


def _starts_chunk(line: bytes) -> bool:
    text = line.replace(b"\0", b"")
    return text.startswith((b"{", b"info:", b"error:", b"warn:", b"debug:", b"[winston]"))


def _write(gen: _Gen, rec: Record, clock: datetime, lines: list[bytes]) -> None:
    """One record, then maybe noise: padding, then at most one trailer (trace, crash or junk)."""
    rng, truth = gen.rng, gen.truth
    if rng.random() < 0.1:  # a notice before the record: closes any trace before it
        lines.append(b"[winston] Unknown logger level: warning")
        truth.lines["notice"] += 1
    if rng.random() < 0.1:  # a record winston could not route, still carrying its fields
        notice = {"message": "Resetting QR rate limiter counters", "level": "info"}
        lines.append(
            b"[winston] Attempt to write logs with no transports: " + json.dumps(notice).encode()
        )
        truth.lines["entries"] += 1
    text = _entry(rec, clock, as_json=rng.random() < 0.4).encode()
    if rng.random() < 0.05:
        text = b"\0" * rng.randint(1, 200) + text  # written after a truncation under the writer
    lines.append(text)
    truth.lines["entries"] += 1
    if rng.random() < 0.15:
        lines.append(_chatter(clock))
        truth.lines["entries"] += 1
    for _ in range(rng.choice([0] * 9 + [2])):
        lines.append(b"\0" * rng.randint(1, 4096))
        truth.lines["padding"] += 1
    roll = rng.random()
    if roll < 0.03:
        lines.extend(part.encode() for part in CRASH)
        truth.crashes += 1
        truth.lines["stack_trace"] += len(CRASH)
    elif roll < 0.08:
        lines.extend(part.encode() for part in TRACE)
        truth.exceptions += 1
        truth.lines["stack_trace"] += len(TRACE)
    elif roll < 0.11:
        junk = rng.sample(JUNK, rng.randint(1, 2))
        lines.extend(part.encode() for part in junk)
        truth.unknown["lines"] += len(junk)
        truth.lines["unknown"] += len(junk)


def _chatter(clock: datetime) -> bytes:
    fields = {"from": "status@broadcast", "type": "image", "timestamp": clock.isoformat()}
    return f"debug: Message received {json.dumps(fields)}".encode()


def write_large(path: Any, cycles: int, sessions: int = 20) -> None:
    """``cycles`` re-created sessions over a fixed set of ids, streamed to ``path``."""
    clock = START
    with open(path, "wb") as out:
        for i in range(cycles):
            sid = f"webjs_{i % sessions}"
            for message, extra in (
                ("Creating WhatsApp session", ""),
                ("QR code generated", ""),
                ("Message received", ""),
                ("Failed to send data to Laravel", ',"error":"timeout of 10000ms exceeded"'),
                ("WhatsApp session authenticated", ""),
                ("WhatsApp session ready", ""),
            ):
                clock += timedelta(milliseconds=250)
                stamp = clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                meta = f'{{"sessionId":"{sid}","timestamp":"{stamp}"{extra}}}'
                out.write(f"info: {message} {meta}\n".encode())
            if i % 7 == 0:
                out.write(("\n".join(TRACE) + "\n").encode())
                out.write(b"\0" * 512 + b"\n")
