"""``wagate webhooks list|retry`` on the database at ``WAGATE_DATABASE_URL`` (DESIGN §7, §10).

A running gateway picks up a replay on its dispatcher's next poll (it is another process, so no
in-process wake-up reaches it).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.cli.database import on_database
from wagate.core.caller import Caller
from wagate.core.statuses import DeliveryStatus
from wagate.db.database import Database
from wagate.db.models import WebhookDelivery
from wagate.webhooks import queue

ADMIN = Caller(key_id=None, workspace_id=None)
COLUMNS = ("id", "event_id", "event_type", "status", "attempts", "last_status", "last_error")

app = typer.Typer(help="Webhook deliveries: inspect and replay.", no_args_is_help=True)


def _row(delivery: WebhookDelivery, event_type: str) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": event_type,
        "workspace_id": delivery.workspace_id,
        "account_id": delivery.account_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat(),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
    }


def _print(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("event_id", "attempts") else "left")
    for row in rows:
        table.add_row(*("-" if row[c] is None else str(row[c]) for c in COLUMNS))
    Console().print(table)


@app.command("list")
def list_command(
    status: Annotated[
        str | None, typer.Option(help="pending, delivered or dead.", show_default=False)
    ] = None,
    after: Annotated[int, typer.Option(help="Only events after this id.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Webhook deliveries in event order."""
    if status is not None and status not in {s.value for s in DeliveryStatus}:
        raise typer.BadParameter("must be pending, delivered or dead", param_hint="--status")

    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.read_sessions() as session:
            rows = await queue.page(session, ADMIN, status=status, after=after, limit=limit)
        return [_row(d, t) for d, t in rows]

    _print(on_database(work), as_json, "webhook deliveries")


@app.command("retry")
def retry_command(
    delivery_id: Annotated[str | None, typer.Argument(help="The delivery to replay.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Replay every dead one.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Make a dead (or pending) delivery due now with its attempts reset."""
    if (delivery_id is None) == (not all_dead):
        raise typer.BadParameter("give a delivery ID or --all-dead, not both")
    if all_dead:

        async def every(db: Database) -> int:
            return await db.run(lambda s: queue.retry_dead(s, ADMIN))

        count = on_database(every)
        if as_json:
            typer.echo(json.dumps({"retried": count}))
        else:
            Console().print(f"{count} dead deliveries are due again")
        return
    assert delivery_id is not None

    async def one(db: Database) -> dict[str, Any]:
        async def work(session: AsyncSession) -> dict[str, Any]:
            return _row(*await queue.retry(session, ADMIN, delivery_id))

        return await db.run(work)

    _print([on_database(one)], as_json, "replayed")
