"""``wagate funnel``: the link funnel of the database at ``WAGATE_DATABASE_URL`` (DESIGN §8)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from wagate.cli.output import fail
from wagate.config import Settings
from wagate.db.database import Database
from wagate.db.models import Workspace
from wagate.services import funnel as funnel_math

STAGES = (
    ("attempts", "attempts"),
    ("first_code_shown", "first code shown"),
    ("paired", "paired"),
    ("connected", "connected"),
)


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint=name) from None
    # A time without a zone is read as UTC, the zone wagate stores.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _compute(
    url: str, workspace: str | None, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    db = Database(url)
    try:
        async with db.read_sessions() as session:
            if workspace is not None and await session.get(Workspace, workspace) is None:
                raise typer.BadParameter(f"no workspace {workspace}", param_hint="--workspace")
            result = await funnel_math.compute(
                session, workspace_id=workspace, since=since, until=until
            )
            return result.as_dict()
    finally:
        await db.close()


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def render(result: dict[str, Any], console: Console) -> None:
    stages = Table(title="link funnel (unit: link attempt)")
    for column in ("stage", "attempts", "of all attempts"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for key, label in STAGES:
        stages.add_row(label, str(result[key]), _percent(result[key], result["attempts"]))
    console.print(stages)
    rate = result["success_rate"]
    times = result["time_to_link_seconds"]
    per_attempt = result["qr_codes_per_attempt"]
    console.print(
        f"success rate (linked ÷ ended attempts): {'-' if rate is None else f'{rate:.1%}'}"
        f"  ·  open attempts: {result['open']}"
    )
    console.print(
        f"QR codes: {result['qr_codes']} ({'-' if per_attempt is None else per_attempt} per "
        f"attempt)  ·  time to link p50 {times['p50'] if times['p50'] is not None else '-'} s, "
        f"p90 {times['p90'] if times['p90'] is not None else '-'} s"
    )
    outcomes = Table(title="outcomes by reason")
    for column in ("outcome", "reason", "attempts"):
        outcomes.add_column(column, justify="right" if column == "attempts" else "left")
    for outcome, reasons in result["reasons"].items():
        for reason, count in reasons.items():
            outcomes.add_row(outcome, reason, str(count))
    console.print(outcomes)


def funnel(
    since: Annotated[
        str | None, typer.Option(help="ISO 8601; attempts started at or after (UTC if no zone).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601; attempts started before.")] = None,
    workspace: Annotated[str | None, typer.Option(help="Only this workspace id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """The link funnel over attempts: attempts → first code shown → paired → connected."""
    start, end = _moment(since, "--since"), _moment(until, "--until")
    try:
        result = asyncio.run(_compute(Settings().database_url, workspace, start, end))
    except typer.BadParameter:
        raise
    except Exception as exc:  # the database's own message is what the user needs
        raise fail(f"could not read the funnel: {exc}") from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        render(result, Console())
