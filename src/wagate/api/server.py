"""uvicorn, told to end the gateway's event streams as soon as shutdown begins.

uvicorn waits for open responses to finish before it runs the lifespan's shutdown; an event
stream never finishes by itself, so without this every open stream would hold the shutdown
until uvicorn's graceful timeout cancels it.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from wagate.gateway import Gateway


class GatewayServer(uvicorn.Server):
    """A uvicorn server that calls ``Gateway.begin_shutdown`` before draining connections."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.begin_shutdown()
        await super().shutdown(sockets)


def server(app: FastAPI, *, host: str, port: int, graceful_seconds: int = 3) -> GatewayServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=graceful_seconds,
    )
    return GatewayServer(config, app.state.gateway)
