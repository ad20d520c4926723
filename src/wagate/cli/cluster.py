"""``wagate cluster status``: the nodes sharing the database at ``WAGATE_DATABASE_URL``, as
``GET /v1/cluster`` shows them (DESIGN §13)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wagate.cli.database import on_database
from wagate.db.database import Database
from wagate.services import cluster
from wagate.services.cluster import NodeInfo

app = typer.Typer(help="The gateway nodes that share this database.", no_args_is_help=True)


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Every node: its state (live, leaving, dead), when it started and was last seen, and how
    many sessions and open attempts it owns."""

    async def read(db: Database) -> list[NodeInfo]:
        async with db.read_sessions() as session:
            return await cluster.nodes(session)

    nodes = on_database(read)
    rows = [
        {
            "name": n.name,
            "state": n.state,
            "started_at": n.started_at.isoformat(),
            "last_seen_at": n.last_seen_at.isoformat(),
            "sessions_owned": n.sessions_owned,
        }
        for n in nodes
    ]
    if as_json:
        typer.echo(json.dumps({"nodes": rows}, indent=2))
        return
    table = Table(title=f"{len(rows)} nodes")
    for column in ("name", "state", "started_at", "last_seen_at", "sessions_owned"):
        table.add_column(column, justify="right" if column == "sessions_owned" else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)
