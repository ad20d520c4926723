"""``wagate doctor deps``: engine versions a project declares and installs; their known problems.

A resolved (installed or pinned) version inside an affected range is a problem the project has now.
A declared range that merely admits affected versions is reported apart: it matters the next time
the lockfile is regenerated, or on every install when there is none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from wagate.doctor import DoctorError
from wagate.doctor.manifests import Declared, Ecosystem, Resolved, is_manifest, read
from wagate.doctor.semver import (
    RangeError,
    parse_pep440,
    parse_pep440_version,
    parse_range,
    parse_version,
    pep440_intervals,
)


@dataclass(frozen=True, slots=True)
class KnownIssue:
    """One entry of ``known_issues.json``."""

    id: str
    ecosystem: Ecosystem
    packages: tuple[str, ...]
    affected: str
    fixed_in: str | None
    summary: str
    source: str
    see_also: tuple[str, ...]
    checked: str


@dataclass(frozen=True, slots=True)
class Match:
    issue: KnownIssue
    how: Literal["resolved", "declared"]
    version: str | None  # the resolved version, or None when only the declared range admits it


@dataclass
class Engine:
    """One engine package as the project has it."""

    package: str
    ecosystem: Ecosystem
    declared: list[Declared] = field(default_factory=list)
    resolved: list[Resolved] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)


@dataclass
class DepsReport:
    path: str
    files: list[str]
    engines: list[Engine]

    @property
    def affected(self) -> bool:
        return any(m.how == "resolved" for e in self.engines for m in e.matches)


def load_known_issues(text: str | None = None) -> list[KnownIssue]:
    """The shipped data file, or ``text`` in the same format."""
    if text is None:
        text = resources.files("wagate.doctor").joinpath("known_issues.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return [
        KnownIssue(
            id=e["id"],
            ecosystem=e["ecosystem"],
            packages=tuple(e["packages"]),
            affected=e["affected"],
            fixed_in=e.get("fixed_in"),
            summary=e["summary"],
            source=e["source"],
            see_also=tuple(e.get("see_also", ())),
            checked=e["checked"],
        )
        for e in data["issues"]
    ]


def _resolved_affected(issue: KnownIssue, version: str) -> bool:
    try:
        if issue.ecosystem == "npm":
            return parse_range(issue.affected).satisfied_by(parse_version(version))
        return parse_pep440(issue.affected).contains(parse_pep440_version(version), True)
    except RangeError:
        return False  # a git URL or tag installed in place of a version: nothing to compare


def _declared_admits(issue: KnownIssue, spec: str) -> bool:
    try:
        if issue.ecosystem == "npm":
            mine, theirs = parse_range(spec).intervals(), parse_range(issue.affected).intervals()
            return any(a.overlaps(b) for a in mine for b in theirs)
        pmine = pep440_intervals(parse_pep440(spec))
        ptheirs = pep440_intervals(parse_pep440(issue.affected))
        return any(a.overlaps(b) for a in pmine for b in ptheirs)
    except RangeError:
        return False


def match(engine: Engine, issues: list[KnownIssue]) -> list[Match]:
    found: list[Match] = []
    resolved = {r.version for r in engine.resolved} | {
        d.pinned for d in engine.declared if d.pinned
    }
    for issue in issues:
        if issue.ecosystem != engine.ecosystem or engine.package not in issue.packages:
            continue
        hits = sorted(v for v in resolved if _resolved_affected(issue, v))
        found += [Match(issue, "resolved", v) for v in hits]
        if not hits and any(_declared_admits(issue, d.spec) for d in engine.declared):
            found.append(Match(issue, "declared", None))
    return found


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise DoctorError(f"{path} does not exist")
    if path.is_file():
        if not is_manifest(path):
            raise DoctorError(
                f"{path} is not a package.json, package-lock.json, requirements*.txt "
                "or pyproject.toml"
            )
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and is_manifest(p))
    if not files:
        raise DoctorError(
            f"{path} holds no package.json, package-lock.json, requirements*.txt or pyproject.toml"
        )
    return files


def check(path: Path, issues: list[KnownIssue] | None = None) -> DepsReport:
    """Read the dependency files at ``path`` (a file or a directory) and match known issues."""
    issues = load_known_issues() if issues is None else issues
    files = _files(path)
    engines: dict[tuple[str, str], Engine] = {}
    for file in files:
        declared, resolved = read(file)
        for d in declared:
            engines.setdefault(
                (d.ecosystem, d.package), Engine(d.package, d.ecosystem)
            ).declared.append(d)
        for r in resolved:
            engines.setdefault(
                (r.ecosystem, r.package), Engine(r.package, r.ecosystem)
            ).resolved.append(r)
    for engine in engines.values():
        engine.matches = match(engine, issues)
    ordered = sorted(engines.values(), key=lambda e: (e.ecosystem, e.package))
    return DepsReport(str(path), [str(f) for f in files], ordered)


def to_json(report: DepsReport) -> dict[str, Any]:
    def issue(m: Match) -> dict[str, Any]:
        i = m.issue
        return {
            "id": i.id,
            "matched": m.how,
            "version": m.version,
            "affected": i.affected,
            "fixed_in": i.fixed_in,
            "summary": i.summary,
            "source": i.source,
            "see_also": list(i.see_also),
            "checked": i.checked,
        }

    return {
        "path": report.path,
        "files": report.files,
        "affected": report.affected,
        "engines": [
            {
                "package": e.package,
                "ecosystem": e.ecosystem,
                "declared": [{"spec": d.spec, "file": d.file} for d in e.declared],
                "resolved": [
                    {"version": r.version, "file": r.file, "where": r.where} for r in e.resolved
                ]
                + [
                    {"version": d.pinned, "file": d.file, "where": "pinned"}
                    for d in e.declared
                    if d.pinned
                ],
                "problems": [issue(m) for m in e.matches],
            }
            for e in report.engines
        ],
    }
