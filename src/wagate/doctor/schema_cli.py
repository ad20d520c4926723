"""``wagate doctor schema --db URL [--lint]``: connect read-only, compare or lint, report.

Exit status: 0 nothing found, 1 findings, 2 the database could not be opened or read.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import typer
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SAWarning, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from wagate.db.database import alembic_config, async_url
from wagate.db.models import Base
from wagate.doctor import DoctorError
from wagate.doctor.lint import lint_schema
from wagate.doctor.schema import VERSION_TABLE, Finding, diff_schema, expected_shape

CONNECT_TIMEOUT = 10  # seconds; a silent host must not hang the command


@dataclass
class SchemaReport:
    """What ``doctor schema`` found in one database."""

    mode: str  # "diff" or "lint"
    database: str  # the URL without its password
    findings: list[Finding] = field(default_factory=list)
    revision: str | None = None
    head: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "mode": self.mode,
            "database": self.database,
            "findings": [f.as_json() for f in self.findings],
        }
        if self.mode == "diff":
            data.update(revision=self.revision, head=self.head)
        return data


def _sqlite_read_only(url: URL) -> URL:
    """The same SQLite file opened read-only; a missing file is an error, never created."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return url
    path = Path(database)
    if not path.is_file():
        raise DoctorError(f"no SQLite database file at {path}")
    return url.set(
        database=f"file:{quote(str(path.resolve()), safe='/')}",
        query={**url.query, "mode": "ro", "uri": "true"},
    )


def _engine(url: str) -> AsyncEngine:
    target = make_url(async_url(url))
    connect_args: dict[str, Any] = {}
    if target.get_backend_name() == "sqlite":
        target = _sqlite_read_only(target)
    elif target.drivername == "postgresql+asyncpg":
        connect_args["timeout"] = CONNECT_TIMEOUT
    elif target.drivername == "mysql+asyncmy":
        if not target.database:
            # MySQL has no default database to read: every question would fail later, unclearly.
            raise DoctorError("the URL names no database: add one, as in mysql://user@host/wagate")
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    return create_async_engine(
        target, poolclass=NullPool, hide_parameters=True, connect_args=connect_args
    )


def _reason(exc: BaseException) -> str:
    """One line: the driver's own message, without SQLAlchemy's wrapping and links."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line for line in str(inner).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(inner).__name__


def _revision_findings(revision: str | None) -> list[Finding]:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if revision == head:
        return []
    if revision is None:
        return [
            Finding(
                "revision_missing",
                VERSION_TABLE,
                "-",
                f"no migration revision recorded: not built by wagate's migrations (head {head})",
            )
        ]
    known = {s.revision for s in script.walk_revisions()}
    if revision in known:
        return [
            Finding(
                "revision_behind",
                VERSION_TABLE,
                revision,
                f"at revision {revision}, head is {head}: run `wagate db upgrade`",
            )
        ]
    return [
        Finding(
            "revision_unknown",
            VERSION_TABLE,
            revision,
            f"revision {revision} is not one of this wagate's migrations (head {head})",
        )
    ]


def _examine_sync(conn: Connection, report: SchemaReport) -> None:
    with warnings.catch_warnings():
        # Types SQLAlchemy does not know (a PostGIS column in someone's schema) warn on stderr;
        # they still reach the report, as a family of their own.
        warnings.simplefilter("ignore", SAWarning)
        _examine(conn, report)


def _examine(conn: Connection, report: SchemaReport) -> None:
    inspector = inspect(conn)
    if report.mode == "lint":
        report.findings = lint_schema(inspector)
        return
    expected = {t.name: expected_shape(t, conn.dialect) for t in Base.metadata.sorted_tables}
    report.findings = diff_schema(expected, inspector)
    report.revision = MigrationContext.configure(conn).get_current_revision()
    report.head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    report.findings += _revision_findings(report.revision)


async def examine(url: str, *, lint: bool = False) -> SchemaReport:
    """Compare the database at ``url`` with wagate's migrations, or lint it; reads only.

    Raises ``DoctorError`` when the URL is unusable or the database cannot be reached or read.
    """
    try:
        shown = make_url(url).render_as_string(hide_password=True)
        engine = _engine(url)
    except (ArgumentError, ValueError) as exc:
        raise DoctorError(f"not a usable database URL: {_reason(exc)}") from exc
    report = SchemaReport("lint" if lint else "diff", shown)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_examine_sync, report)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise DoctorError(f"cannot read {shown}: {_reason(exc)}") from exc
    finally:
        await engine.dispose()
    return report


def render(console: Console, report: SchemaReport) -> None:
    console.print(f"[bold]database[/bold] {escape(report.database)}", highlight=False)
    if report.mode == "diff":
        console.print(f"revision {report.revision or 'none'} (head {report.head})", highlight=False)
    if report.ok:
        console.print(
            "no uniqueness key contains a status column"
            if report.mode == "lint"
            else "the schema matches wagate's migrations"
        )
        return
    # Names stay whole on one line; the explanation wraps beside them.
    table = Table("table / name", "finding", show_lines=True)
    table.columns[0].no_wrap = True
    for f in report.findings:
        table.add_row(
            Text.assemble(f.table, *(("\n", (f.name, "bold")) if f.name != f.table else ())),
            Text.assemble((f.kind, "bold"), "\n", f.detail),
        )
    console.print(table)
    console.print(f"{len(report.findings)} finding(s)")


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def schema(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            envvar="WAGATE_DATABASE_URL",
            help="SQLAlchemy URL, with or without an async driver: sqlite:///wagate.db, "
            "postgresql://user@host/db, mysql://user@host/db.",
        ),
    ],
    lint: Annotated[
        bool,
        typer.Option(
            "--lint",
            help="Instead of comparing with wagate's migrations, flag uniqueness keys that "
            "contain a status-like column (works on any database).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Compare a live database with wagate's migrations, or lint any database's unique keys.

    Exits 1 when something is off, 2 when the database cannot be opened or read.
    """
    try:
        report = asyncio.run(examine(db, lint=lint))
    except DoctorError as exc:
        _fail(exc.message)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        render(Console(), report)
    if not report.ok:
        raise typer.Exit(1)
