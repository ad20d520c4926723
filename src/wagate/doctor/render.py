"""Rich tables for people: the same facts as the ``--json`` output, laid out to be read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from wagate.doctor.deps import DepsReport
from wagate.doctor.report import Tally

_STAGES = (
    ("created", "attempts"),
    ("first QR code shown", "first_qr"),
    ("authenticated (paired)", "authenticated"),
    ("ready (linked)", "ready"),
)
_UNKNOWN = (
    ("attempts", "attempts still open when the logs end"),
    ("events", "session events of sessions these logs never saw created"),
    ("webhook_failures", "webhook failures whose line gives no cause"),
    ("lines", "lines that are neither an entry nor a stack trace"),
)


def _short(where: str | None, one_file: bool) -> str:
    """``/long/path/file.log:44`` -> ``file.log:44``, or ``44`` when only one file was read."""
    if where is None:
        return "-"
    path, _, line = where.rpartition(":")
    return line if one_file else f"{Path(path).name}:{line}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _evidence(view: dict[str, Any], one_file: bool) -> str:
    lines = view["lines"]
    parts = [
        f"{stage.replace('_', ' ')} {_short(at, one_file)}"
        for stage, at in lines.items()
        if isinstance(at, str)
    ]
    if view["qr_codes"] > 1:
        parts.append(f"{view['qr_codes']} QR codes")
    return ", ".join(parts)


def logs(console: Console, tally: Tally) -> None:
    data = tally.as_json()
    n = data["attempts"]
    one = len(data["files"]) == 1
    span = data["span"]
    console.print(
        f"[bold]Link attempts[/bold] in {len(data['files'])} file(s), "
        f"{data['lines'].get('total', 0)} lines, {span['first'] or '?'} to {span['last'] or '?'}"
    )
    funnel = Table("stage", "attempts", "of all")
    for label, key in _STAGES:
        funnel.add_row(label, str(data[key]), _pct(data[key], n))
    console.print(funnel)
    rate = data["success_rate"]
    per = data["qr_per_attempt"]
    console.print(
        f"success rate per attempt: {'-' if rate is None else f'{100 * rate:.1f}%'}; "
        f"QR codes: {data['qr_codes']} ({per['mean'] if per['mean'] is not None else '-'} "
        f"per attempt, at most {per['max']})"
    )
    timings = Table("from creation to", "n", "min", "mean", "max")
    for stage, stat in data["timings_seconds"].items():
        timings.add_row(
            stage,
            str(stat["count"]),
            _seconds(stat["min"]),
            _seconds(stat["mean"]),
            _seconds(stat["max"]),
        )
    console.print(timings)
    outcomes = Table("outcome", "attempts", "evidence: lines of the first attempt")
    for outcome, count in data["outcomes"].items():
        first = data["evidence"].get(outcome, [])
        outcomes.add_row(outcome, str(count), _evidence(first[0], one) if first else "")
    console.print(outcomes)
    total = sum(data["webhook_failures"].values())
    hooks = Table(f"webhook delivery failures ({total})", "count", "example lines")
    for cause, count in data["webhook_failures"].items():
        examples = data["webhook_failure_examples"].get(cause, [])[:3]
        hooks.add_row(cause, str(count), ", ".join(_short(e, one) for e in examples))
    console.print(hooks)
    for title, key in (("crashes", "crashes"), ("uncaught errors", "exceptions")):
        section = data[key]
        console.print(f"{title}: {section['count']}")
        for item in section["first"]:
            console.print(f"  {item['message']} (lines {_short(item['lines'], one)})")
    unknown = Table("unknown (attributed to no cause)", "count")
    for key, label in _UNKNOWN:
        unknown.add_row(label, str(data["unknown"][key]))
    console.print(unknown)


def _copy(where: str) -> str:
    """``node_modules/a/node_modules/b`` -> ``via a``; a top-level copy is just "installed"."""
    parts = where.split("node_modules/")
    return f"via {parts[-2].rstrip('/')}" if len(parts) > 2 else "installed"


def deps(console: Console, report: DepsReport) -> None:
    console.print(f"[bold]WhatsApp engines[/bold] in {', '.join(report.files)}")
    if not report.engines:
        console.print("no WhatsApp engine (whatsapp-web.js, baileys, neonize, puppeteer) found")
        return
    table = Table("package", "declared", "resolved", "known problems")
    for e in report.engines:
        declared = ", ".join(f"{d.spec} ({Path(d.file).name})" for d in e.declared) or "-"
        versions = [f"{r.version} ({_copy(r.where)})" for r in e.resolved]
        versions += [f"{d.pinned} (pinned)" for d in e.declared if d.pinned]
        now = [m.issue.id for m in e.matches if m.how == "resolved"]
        admits = [f"range admits {m.issue.id}" for m in e.matches if m.how == "declared"]
        problems = "\n".join([*now, *admits]) or "none"
        table.add_row(e.package, declared, "\n".join(versions) or "-", problems)
    console.print(table)
    for e in report.engines:
        for m in e.matches:
            what = (
                f"{m.version} is affected"
                if m.version
                else "the declared range admits affected versions"
            )
            console.print(
                f"[bold]{m.issue.id}[/bold] ({e.package} {m.issue.affected}; {what}; "
                f"fixed in {m.issue.fixed_in or '-'})\n  {m.issue.summary}\n  {m.issue.source}"
            )
