"""``wagate demo``: the whole linking flow, in-process, against the simulator."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from wagate.api.app import create_app
from wagate.config import Settings

DEMO_PHONE = "15550001234"


async def _poll(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], until: Any, timeout: float = 15.0
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(path, headers=headers)
        if response.status_code == 200 and until(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not reach the expected state")
        await asyncio.sleep(0.02)


async def run_demo(console: Console, time_scale: float) -> None:
    """Start a gateway on a throw-away SQLite database and link one simulated phone."""
    with tempfile.TemporaryDirectory(prefix="wagate-demo-") as tmp:
        admin_key = "wg_" + secrets.token_urlsafe(24)
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}",
            engine="sim",
            sim_time_scale=time_scale,
            data_dir=Path(tmp) / "data",
            admin_key=admin_key,
        )
        app = create_app(settings)
        started = time.monotonic()
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://demo"
            ) as http,
        ):
            await _walkthrough(console, http, {"Authorization": f"Bearer {admin_key}"})
        console.print(f"\n[dim]demo finished in {time.monotonic() - started:.1f} s[/dim]")


async def _walkthrough(console: Console, http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    step = console.print
    workspace = (await http.post("/v1/workspaces", json={"name": "demo"}, headers=admin)).json()
    auth = {"Authorization": f"Bearer {workspace['api_key']}"}
    step(f"[bold]1.[/bold] workspace [cyan]{workspace['id']}[/cyan] created")
    account = (await http.post("/v1/accounts", json={"label": "sales"}, headers=auth)).json()
    step(f"[bold]2.[/bold] account [cyan]{account['id']}[/cyan] created: {account['status']}")
    attempt = (
        await http.post(f"/v1/accounts/{account['id']}/link", json={"method": "qr"}, headers=auth)
    ).json()
    step(f"[bold]3.[/bold] link attempt [cyan]{attempt['id']}[/cyan] opened")
    qr = await _poll(http, f"/v1/accounts/{account['id']}/qr", auth, lambda _: True)
    art = await http.get(f"/v1/accounts/{account['id']}/qr", params={"format": "txt"}, headers=auth)
    step("[bold]4.[/bold] scan this with the simulated phone:")
    console.print(art.text, highlight=False)
    scan = await http.post(
        "/v1/sim/scan", json={"code": qr["code"], "phone": DEMO_PHONE}, headers=auth
    )
    step(
        f"[bold]5.[/bold] phone {DEMO_PHONE} scanned code #{qr['index'] + 1}: "
        f"[green]{scan.json()['result']}[/green]"
    )
    linked = await _poll(
        http, f"/v1/accounts/{account['id']}", auth, lambda a: a["status"] == "connected"
    )
    step(f"[bold]6.[/bold] account is [green]{linked['status']}[/green] as {linked['jid']}")
    funnel = (await http.get("/v1/funnel", headers=auth)).json()
    table = Table(title="link funnel of this run (unit: link attempt)")
    for column in ("attempts", "first code shown", "paired", "connected", "success rate"):
        table.add_column(column, justify="right")
    rate = funnel["success_rate"]
    table.add_row(
        str(funnel["attempts"]),
        str(funnel["first_code_shown"]),
        str(funnel["paired"]),
        str(funnel["connected"]),
        "-" if rate is None else f"{rate:.0%}",
    )
    console.print(table)
