"""The FastAPI application: one lifespan opens the gateway and closes it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from wagate import __version__
from wagate.api import (
    accounts,
    cluster,
    deliveries,
    errors,
    event_log,
    funnel,
    health,
    keys,
    messages,
    metrics,
    sim,
    workspaces,
)
from wagate.api.limits import BodyLimit
from wagate.api.schemas import ErrorBody
from wagate.config import Settings
from wagate.gateway import Gateway

# Documents the one error body for 422 too (FastAPI's default names a shape wagate never sends),
# and the body limit every route shares (wagate.api.limits).
VALIDATION: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "Request body over 64 KiB"},
    422: {"model": ErrorBody, "description": "Invalid input"},
}


def create_app(
    settings: Settings | None = None,
    gateway: Gateway | None = None,
    on_started: Callable[[Gateway], None] | None = None,
    *,
    tune_gc: bool = False,
) -> FastAPI:
    """The API over ``gateway`` (opened and closed by the app's lifespan); ``on_started`` runs
    once the gateway is open (``wagate serve`` shows a newly created admin key there).
    ``tune_gc``: the process is this gateway's alone (``Gateway.tune_gc``)."""
    runtime = gateway or Gateway(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.open()
            if tune_gc:
                runtime.tune_gc()
            if on_started is not None:
                on_started(runtime)
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="wagate",
        version=__version__,
        summary="Multi-tenant gateway for WhatsApp linked-device sessions.",
        lifespan=lifespan,
    )
    app.state.gateway = runtime
    errors.install(app)
    app.add_middleware(BodyLimit)
    for module in (workspaces, accounts, event_log, deliveries, funnel, sim, health, metrics):
        app.include_router(module.router, responses=VALIDATION)
    for module in (keys, messages, cluster):
        app.include_router(module.router, responses=VALIDATION)
    return app
