"""The ``wagate`` command line."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from wagate import __version__
from wagate.cli.cluster import app as cluster_app
from wagate.cli.funnel import funnel
from wagate.cli.output import fail
from wagate.cli.webhooks import app as webhooks_app
from wagate.config import Settings
from wagate.db.database import Database
from wagate.doctor.cli import app as doctor_app
from wagate.errors import WagateError

if TYPE_CHECKING:
    from wagate.gateway import Gateway

app = typer.Typer(
    name="wagate",
    help="Gateway for WhatsApp linked-device sessions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(doctor_app, name="doctor")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(cluster_app, name="cluster")
app.command("funnel")(funnel)
console = Console(stderr=True)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    engine: Annotated[str | None, typer.Option(help="sim or whatsmeow.")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json.")] = None,
) -> None:
    """Run the gateway: apply migrations, restore sessions, serve the HTTP API."""
    from wagate.api.app import create_app
    from wagate.api.server import server
    from wagate.gateway import build_engine, preflight
    from wagate.logs import configure

    overrides: dict[str, object] = {}
    for name, value in (
        ("host", host),
        ("port", port),
        ("engine", engine),
        ("log_format", log_format),
    ):
        if value is not None:
            overrides[name] = value
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        build_engine(settings)
        asyncio.run(preflight(settings))
    except WagateError as exc:
        raise fail(exc.message) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # the database's own message is what the user needs
        raise fail(f"could not open the database: {exc}") from None
    configure(settings.log_format, settings.log_level)
    # Ends open event streams as soon as shutdown begins (see wagate.api.server).
    running = server(
        create_app(settings, on_started=_show_new_admin_key, tune_gc=True),
        host=settings.host,
        port=settings.port,
    )
    running.run()
    if not running.started:
        raise typer.Exit(3)  # uvicorn's own code for a failed start


def _show_new_admin_key(gateway: Gateway) -> None:
    """Show the admin key created at first start, once, on the terminal — never in a log."""
    if gateway.new_admin_key is None:
        return
    console.print(
        "\n[bold]admin key[/bold] (shown only now; store it, or set WAGATE_ADMIN_KEY):\n"
        f"  {gateway.new_admin_key}\n",
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to WAGATE_DATABASE_URL."""

    async def run() -> str | None:
        db = Database(Settings().database_url)
        try:
            await db.upgrade()
            return await db.current_revision()
        finally:
            await db.close()

    try:
        revision = asyncio.run(run())
    except Exception as exc:  # the database's own message is what the user needs
        raise fail(f"could not upgrade the database: {exc}") from None
    console.print(f"database at revision [bold]{revision}[/bold]")


@app.command()
def demo(
    time_scale: Annotated[float, typer.Option(help="Simulator clock factor.")] = 0.01,
) -> None:
    """Link a simulated phone end to end, in-process, in a few seconds."""
    from wagate.cli.demo import run_demo

    asyncio.run(run_demo(Console(), time_scale))


@app.command("sim-server")
def sim_server(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8090,
) -> None:
    """Run one simulated WhatsApp for every gateway node started with WAGATE_SIM_URL; its clock
    runs at WAGATE_SIM_TIME_SCALE."""
    from aiohttp import web

    from wagate.engines.sim import SimServer
    from wagate.engines.simserver import build_app
    from wagate.logs import configure

    try:
        settings = Settings()
    except ValueError as exc:
        raise fail(str(exc)) from None
    configure(settings.log_format, settings.log_level)
    url = f"http://{host}:{port}"
    console.print(
        f"sim-server on {url} (time scale {settings.sim_time_scale}); start each node with "
        f"WAGATE_ENGINE=sim WAGATE_SIM_URL={url}",
        highlight=False,
        markup=False,
    )
    app_ = build_app(SimServer(settings.sim_time_scale))
    try:
        web.run_app(app_, host=host, port=port, print=None, access_log=None)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def main() -> None:
    app()
