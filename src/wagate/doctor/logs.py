"""``wagate doctor logs``: link attempts, QR codes and webhook failures reconstructed from logs.

Two kinds of log are read, mixed freely, one line at a time:

- wagate's own JSON lines. An attempt is its ``attempt_id``, from ``link attempt started`` to
  ``link attempt ended``, whose ``outcome`` is taken as logged. The messages are
  ``WagateMessage`` (defined in ``wagate.logs``, importable from here too); wagate's
  code logs with those members so the two cannot drift apart.
- winston logs of whatsapp-web.js services, text or JSON. An attempt starts when a session is
  created and collects that session's QR codes, authentication, ready, disconnection and errors
  until the same session is created again or the logs end. Its outcome is what the lines show:
  ``linked`` (ready), ``failed``, ``disconnected``; when the session was created again before it
  linked, ``no_qr``, ``qr_not_scanned`` or ``not_ready`` (authenticated, never ready).

What the lines do not show stays ``unknown``: an attempt still open when the logs end, an event of
a session these logs never saw created, a webhook failure without a cause, text that is neither an
entry nor a stack trace. None of it is spread over the known causes.

Memory: the files are streamed; state is one small record per open session or attempt, plus capped
lists of evidence (``report.Tally``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from wagate.doctor import DoctorError
from wagate.doctor.lines import Entry, Format, LineKind, Other, read
from wagate.doctor.observations import Kind, Observation, from_entry
from wagate.doctor.report import Block, Ref, Tally, ref
from wagate.logs import WagateMessage

__all__ = ["WagateMessage", "analyze", "Analyzer", "Tally"]

MAX_ERROR_REFS = 3


@dataclass(slots=True)
class Attempt:
    """One link attempt (or one session restoration) while it is open."""

    key: str
    source: str
    created: Ref
    created_ts: datetime | None
    restoring: bool = False
    account: str | None = None
    qr: int = 0
    stages: dict[str, tuple[Ref, datetime | None]] = field(default_factory=dict)
    errors: list[Ref] = field(default_factory=list)
    error_count: int = 0
    ended: Ref | None = None
    outcome: str | None = None
    reason: str | None = None

    def mark(self, stage: str, where: Ref, ts: datetime | None) -> None:
        self.stages.setdefault(stage, (where, ts))  # the first time counts

    def apply(self, event: Observation, where: Ref) -> None:
        kind = event.kind
        if kind is Kind.QR:
            self.qr += 1
            self.mark("first_qr", where, event.ts)
        elif kind in (Kind.AUTHENTICATED, Kind.READY, Kind.DISCONNECTED, Kind.FAILED):
            self.mark(kind.value, where, event.ts)
            if kind in (Kind.FAILED, Kind.DISCONNECTED) and self.reason is None:
                self.reason = event.reason
        elif kind is Kind.ERROR:
            self.error_count += 1
            if len(self.errors) < MAX_ERROR_REFS:
                self.errors.append(where)

    def winston_outcome(self, at_end: bool) -> str:
        if "ready" in self.stages:
            return "linked"
        if "failed" in self.stages:
            return "failed"
        if "disconnected" in self.stages:
            return "disconnected"
        if at_end:
            return "unknown"
        if "authenticated" in self.stages:
            return "not_ready"
        return "qr_not_scanned" if self.qr else "no_qr"

    def view(self, outcome: str) -> tuple[dict[str, Any], dict[str, float]]:
        def at(stage: str) -> str | None:
            return ref(self.stages[stage][0]) if stage in self.stages else None

        seconds: dict[str, float] = {}
        for stage in ("first_qr", "authenticated", "ready"):
            ts = self.stages.get(stage, (None, None))[1]
            if ts is not None and self.created_ts is not None:
                seconds[stage] = round((ts - self.created_ts).total_seconds(), 3)
        reached = next(
            (s for s in ("ready", "authenticated", "first_qr") if s in self.stages), "created"
        )
        lines = {"created": ref(self.created)}
        for stage in ("first_qr", "authenticated", "ready", "disconnected", "failed"):
            lines[stage] = at(stage)
        view = {
            "source": self.source,
            "key": self.key,
            "outcome": outcome,
            "reason": self.reason,
            "reached": reached,
            "qr_codes": self.qr,
            "errors": self.error_count,
            "lines": {**lines, "ended": ref(self.ended), "errors": [ref(e) for e in self.errors]},
            "seconds": seconds,
        }
        return view, seconds


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, ts: datetime | None) -> bool:
        if ts is None:
            return self.since is None  # before the first timestamp of a file: time unknown
        return (self.since is None or ts >= self.since) and (self.until is None or ts <= self.until)


class Analyzer:
    """Takes lines file after file; ``finish`` closes what is still open and returns the tally."""

    def __init__(self, window: Window | None = None, cap: int = 10) -> None:
        self.window = window or Window()
        self.tally = Tally(cap=cap)
        self.sessions: dict[str, Attempt] = {}  # winston, by session id
        self.attempts: dict[str, Attempt] = {}  # wagate, by attempt id
        self.accounts: dict[str, str] = {}  # wagate: account id -> its open attempt id
        self._block: Block | None = None
        self._clock: datetime | None = None

    def feed_file(self, path: Path, fmt: Format = "auto") -> None:
        name = str(path)
        self.tally.files.append(name)
        self._clock = None
        before = self.tally.lines.copy()
        for item in read(path, fmt):
            self.tally.lines["total"] += 1
            if isinstance(item, Entry):
                self._close_block()
                self._entry(name, item)
            else:
                self._other(name, item)
        self._close_block()
        _check_file(path, fmt, self.tally.lines - before)

    def _entry(self, name: str, entry: Entry) -> None:
        self.tally.lines["entries"] += 1
        ts = entry.ts or self._clock
        self._clock = ts
        if not self.window.admits(ts):
            self.tally.lines["outside_window"] += 1
            return
        self.tally.seen(entry.ts)
        event = from_entry(entry)
        if event is None:
            return
        where = (name, entry.line)
        if event.kind is Kind.WEBHOOK_FAILED:
            self.tally.webhook(event.cause or "unknown", where)
        elif entry.source == "wagate":
            self._wagate(event, where)
        else:
            self._winston(event, where)

    def _winston(self, event: Observation, where: Ref) -> None:
        key = event.key
        if event.kind in (Kind.CREATED, Kind.RESTORED):
            if key is None:
                self.tally.unknown["events"] += 1
                return
            if key in self.sessions:
                self._finish(self.sessions.pop(key), at_end=False, ended=where)
            restoring = event.kind is Kind.RESTORED
            self.sessions[key] = Attempt(key, "winston", where, event.ts, restoring)
            return
        attempt = self.sessions.get(key) if key is not None else None
        if attempt is not None:
            attempt.apply(event, where)
        elif event.kind is not Kind.ERROR:
            self.tally.unknown["events"] += 1

    def _wagate(self, event: Observation, where: Ref) -> None:
        key = event.key
        if event.kind is Kind.READY:  # "session connected" names the account, not the attempt
            attempt_id = self.accounts.get(key) if key is not None else None
            if attempt_id is not None and attempt_id in self.attempts:
                self.attempts[attempt_id].apply(event, where)
            return  # a reconnect of a linked account: not part of any attempt
        if event.kind is Kind.CREATED:
            if key is not None and key not in self.attempts:
                self.attempts[key] = Attempt(key, "wagate", where, event.ts, account=event.account)
                if event.account is not None:
                    self.accounts[event.account] = key
            return
        attempt = self.attempts.get(key) if key is not None else None
        if attempt is None:
            self.tally.unknown["events"] += 1
            return
        if event.kind is Kind.ENDED:
            attempt.outcome = event.outcome or "unknown"
            attempt.reason = event.reason
            if attempt.outcome == "linked":
                attempt.mark("ready", where, event.ts)
            self._finish(self.attempts.pop(attempt.key), at_end=False, ended=where)
        else:
            attempt.apply(event, where)

    def _finish(self, attempt: Attempt, at_end: bool, ended: Ref | None = None) -> None:
        attempt.ended = ended
        if attempt.account is not None and self.accounts.get(attempt.account) == attempt.key:
            del self.accounts[attempt.account]
        if attempt.restoring:
            self.tally.restorations["started"] += 1
            for stage in ("first_qr", "ready"):
                self.tally.restorations[stage] += stage in attempt.stages
            return
        if attempt.source == "wagate":
            outcome = attempt.outcome or "unknown"
        else:
            outcome = attempt.winston_outcome(at_end)
        view, seconds = attempt.view(outcome)
        self.tally.attempt(outcome, view, seconds)

    def _other(self, name: str, item: Other) -> None:
        kind, where, block = item.kind, (name, item.line), self._block
        if kind in (LineKind.BLANK, LineKind.PADDING, LineKind.INDENTED) and block is not None:
            block.lines += 1
            block.end = where
        elif kind in (LineKind.BLANK, LineKind.PADDING, LineKind.INDENTED):
            self.tally.lines[kind.value] += 1
        elif kind in (LineKind.NOTICE, LineKind.OTHER_FORMAT):
            self._close_block()
            self.tally.lines[kind.value] += 1
        elif kind is LineKind.EXIT:
            if block is None:
                block = self._block = Block(where, where, "process exited", at=self._clock)
            else:
                block.lines += 1
                block.end = where
            block.fatal = True
            self._close_block()
        elif kind is LineKind.EXCEPTION and (block is None or block.message is not None):
            self._close_block()
            self._block = Block(where, where, item.text.strip(), at=self._clock)
        elif block is None:
            self._block = Block(where, where, at=self._clock)
        else:
            block.lines += 1
            block.end = where
            if kind is LineKind.EXCEPTION:
                block.message = item.text.strip()

    def _close_block(self) -> None:
        block, self._block = self._block, None
        if block is not None:
            self.tally.block(block, report=self.window.admits(block.at))

    def finish(self) -> Tally:
        for attempt in [*self.sessions.values(), *self.attempts.values()]:
            self._finish(attempt, at_end=True)
        self.sessions.clear()
        self.attempts.clear()
        return self.tally


def _check_file(path: Path, fmt: Format, counts: Any) -> None:
    """A file with no entry at all and nothing recognisable is not a log: say so."""
    if counts["entries"]:
        return
    if counts[LineKind.OTHER_FORMAT.value]:
        raise DoctorError(f"{path} has no {fmt} log lines; try --format auto")
    if counts["unknown"] and not counts["stack_trace"]:
        raise DoctorError(f"{path} has no wagate or winston log lines")


def analyze(
    paths: Iterable[Path],
    fmt: Format = "auto",
    since: datetime | None = None,
    until: datetime | None = None,
    cap: int = 10,
) -> Tally:
    """Read ``paths`` in order as one log; raises DoctorError for unreadable input."""
    analyzer = Analyzer(Window(since, until), cap)
    for path in paths:
        analyzer.feed_file(path, fmt)
    return analyzer.finish()
