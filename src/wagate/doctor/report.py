"""Counts and evidence of ``wagate doctor logs``, kept in constant memory, and their JSON form.

Every list here is capped (evidence per outcome, examples per webhook cause, crashes), and timings
keep count, sum, minimum and maximum rather than every value: a log twice as long costs no more.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Ref = tuple[str, int]  # (file, line number)

TIMED_STAGES = ("first_qr", "authenticated", "ready")
CAUSES = ("timeout", "refused", "http_4xx", "http_5xx", "other", "unknown")
QR_HISTOGRAM_TOP = 10  # attempts with more codes share the "10+" bucket


def ref(r: Ref | None) -> str | None:
    return None if r is None else f"{r[0]}:{r[1]}"


@dataclass(slots=True)
class Stat:
    """Count, minimum, mean and maximum of a stream of numbers."""

    count: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)

    def as_json(self) -> dict[str, Any]:
        mean = round(self.total / self.count, 3) if self.count else None
        low = None if self.low is None else round(self.low, 3)
        high = None if self.high is None else round(self.high, 3)
        return {"count": self.count, "min": low, "mean": mean, "max": high}


@dataclass(slots=True)
class Block:
    """Lines between entries: a stack trace when it has an exception line, else unknown text."""

    start: Ref
    end: Ref
    message: str | None = None
    lines: int = 1
    fatal: bool = False
    at: datetime | None = None  # the time of the last entry before it: traces carry none


@dataclass
class Tally:
    """Everything ``doctor logs`` reports, accumulated attempt by attempt and line by line."""

    cap: int = 10
    files: list[str] = field(default_factory=list)
    lines: Counter[str] = field(default_factory=Counter)
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    attempts: int = 0
    qr_codes: int = 0
    with_qr: int = 0
    authenticated: int = 0
    ready: int = 0
    max_qr: int = 0
    qr_histogram: Counter[str] = field(default_factory=Counter)
    timings: dict[str, Stat] = field(default_factory=lambda: {s: Stat() for s in TIMED_STAGES})
    outcomes: Counter[str] = field(default_factory=Counter)
    evidence: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    webhook_failures: Counter[str] = field(default_factory=Counter)
    webhook_examples: dict[str, list[str]] = field(default_factory=dict)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    crash_count: int = 0
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    exception_count: int = 0
    restorations: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)

    def seen(self, ts: datetime | None) -> None:
        if ts is not None:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)

    def webhook(self, cause: str, where: Ref) -> None:
        self.webhook_failures[cause] += 1
        if cause == "unknown":
            self.unknown["webhook_failures"] += 1
        examples = self.webhook_examples.setdefault(cause, [])
        if len(examples) < self.cap:
            examples.append(f"{where[0]}:{where[1]}")

    def block(self, block: Block, report: bool = True) -> None:
        """Lines between entries; ``report`` is false outside the --since/--until window."""
        if block.message is None:
            self.lines["unknown"] += block.lines
            self.unknown["lines"] += block.lines
            return
        self.lines["stack_trace"] += block.lines
        if not report:
            return
        item = {
            "message": block.message,
            "lines": f"{block.start[0]}:{block.start[1]}-{block.end[1]}",
            "after": block.at.isoformat() if block.at else None,
        }
        if block.fatal:
            self.crash_count += 1
            if len(self.crashes) < self.cap:
                self.crashes.append(item)
        else:
            self.exception_count += 1
            if len(self.exceptions) < self.cap:
                self.exceptions.append(item)

    def attempt(self, outcome: str, view: dict[str, Any], seconds: dict[str, float]) -> None:
        """One finished attempt: ``view`` is its evidence, ``seconds`` its timings."""
        self.attempts += 1
        qr = view["qr_codes"]
        self.qr_codes += qr
        self.with_qr += qr > 0
        self.authenticated += view["lines"]["authenticated"] is not None
        self.ready += view["lines"]["ready"] is not None
        self.max_qr = max(self.max_qr, qr)
        self.qr_histogram[str(qr) if qr < QR_HISTOGRAM_TOP else f"{QR_HISTOGRAM_TOP}+"] += 1
        for stage, value in seconds.items():
            self.timings[stage].add(value)
        self.outcomes[outcome] += 1
        if outcome == "unknown":
            self.unknown["attempts"] += 1
        shown = self.evidence.setdefault(outcome, [])
        if len(shown) < self.cap:
            shown.append(view)

    def as_json(self) -> dict[str, Any]:
        n = self.attempts
        return {
            "files": self.files,
            "span": {
                "first": self.first_ts.isoformat() if self.first_ts else None,
                "last": self.last_ts.isoformat() if self.last_ts else None,
            },
            "lines": dict(sorted(self.lines.items())),
            "attempts": n,
            "qr_codes": self.qr_codes,
            "first_qr": self.with_qr,
            "authenticated": self.authenticated,
            "ready": self.ready,
            "success_rate": round(self.ready / n, 4) if n else None,
            "qr_per_attempt": {
                "mean": round(self.qr_codes / n, 3) if n else None,
                "max": self.max_qr,
                "histogram": dict(sorted(self.qr_histogram.items(), key=lambda kv: _bucket(kv[0]))),
            },
            "timings_seconds": {s: self.timings[s].as_json() for s in TIMED_STAGES},
            "outcomes": dict(self.outcomes.most_common()),
            "evidence": self.evidence,
            "webhook_failures": {
                c: self.webhook_failures[c] for c in _causes(self.webhook_failures)
            },
            "webhook_failure_examples": self.webhook_examples,
            "crashes": {"count": self.crash_count, "first": self.crashes},
            "exceptions": {"count": self.exception_count, "first": self.exceptions},
            "restorations": dict(self.restorations),
            "unknown": {
                k: self.unknown[k] for k in ("attempts", "events", "webhook_failures", "lines")
            },
        }


def _bucket(key: str) -> int:
    return int(key.rstrip("+"))


def _causes(counts: Counter[str]) -> list[str]:
    # The fixed causes always appear (a zero says "looked, found none"); others, such as
    # http_3xx, only when seen.
    return [*CAUSES[:-1], *sorted(set(counts) - set(CAUSES)), "unknown"]
