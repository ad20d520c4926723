"""The ``wagate doctor`` command group; the main CLI mounts ``app`` as ``doctor``.

Every command prints tables for people or, with ``--json``, one JSON object for machines. Input it
cannot read ends the command with a one-line ``error:`` message and exit status 2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from wagate.doctor import DoctorError, render
from wagate.doctor.deps import check, to_json
from wagate.doctor.logs import analyze
from wagate.doctor.schema_cli import schema

app = typer.Typer(
    name="doctor",
    help="Diagnose a WhatsApp service: its logs, its database schema, its dependency files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("schema")(schema)


class LogFormat(StrEnum):
    AUTO = "auto"
    WAGATE = "wagate"
    WINSTON = "winston"


def _fail(message: str) -> NoReturn:
    text = escape(message)  # plain text, never markup
    Console(stderr=True).print(f"[red]error:[/red] {text}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _emit(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option} wants an ISO-8601 date or time, such as 2025-11-15T04:45:00Z: {text!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@app.command()
def logs(
    files: Annotated[list[Path], typer.Argument(help="Log files, read in this order as one log.")],
    log_format: Annotated[
        LogFormat, typer.Option("--format", help="Which lines to read: auto takes both kinds.")
    ] = LogFormat.AUTO,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only entries at or after this time (ISO-8601, UTC if bare); events of "
            "attempts that started earlier count as unknown."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Only entries at or before this time; attempts still open then are unknown."
        ),
    ] = None,
    evidence: Annotated[
        int, typer.Option(min=0, help="Attempts listed as evidence per outcome.")
    ] = 10,
) -> None:
    """Reconstruct link attempts, QR codes and webhook failures from wagate or winston logs."""
    start, end = _moment(since, "--since"), _moment(until, "--until")
    try:
        tally = analyze(files, log_format.value, start, end, cap=evidence)
    except DoctorError as exc:
        _fail(exc.message)
    if as_json:
        _emit(tally.as_json())
    else:
        render.logs(Console(), tally)


@app.command()
def deps(
    path: Annotated[Path, typer.Argument(help="A dependency file, or a directory holding some.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Report WhatsApp engine versions and the known linking problems they have.

    Exits 1 when an installed or pinned version is affected by a known problem.
    """
    try:
        report = check(path)
    except DoctorError as exc:
        _fail(exc.message)
    if as_json:
        _emit(to_json(report))
    else:
        render.deps(Console(), report)
    if report.affected:
        raise typer.Exit(1)
