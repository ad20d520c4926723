"""What a request may carry, checked before any route sees it.

- The body: at most 64 KiB, counted on the bytes that actually arrive — ``Content-Length`` can be
  absent (chunked uploads) or wrong — and answered 413 with the usual error body.
- The URL: no NUL character in the path or the query. No id or parameter contains one, and
  PostgreSQL refuses it in any text, so it is a 422 here rather than a driver error later.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wagate.api.errors import error_response

MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(HTTPException):
    """Raised inside ``receive``; FastAPI re-raises HTTP exceptions met while reading a body,
    so the app's own handler answers it with the error body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: at most ``limit`` bytes of request body, and no NUL in the URL."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul(scope):
            response = error_response(422, "validation_error", "the URL contains a NUL character")
            await response(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._reject(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Read outside FastAPI's body parsing (a route reading the stream itself).
            if started:
                raise
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"request body larger than {self.limit} bytes"
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    raw = (scope.get("raw_path") or scope["path"].encode()) + b"?" + scope["query_string"]
    return b"\x00" in raw or b"%00" in raw or b"\x00" in scope["path"].encode()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
