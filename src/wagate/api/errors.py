"""The one place errors become HTTP responses: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from wagate import errors
from wagate.db.database import UNREACHABLE

log = logging.getLogger("wagate.api")

STATUS: dict[type[errors.WagateError], int] = {
    errors.NotFound: 404,
    errors.Unauthorized: 401,
    errors.AdminRequired: 403,
    errors.InvalidInput: 422,
    errors.Conflict: 409,
    errors.IllegalTransition: 409,
    errors.EngineUnavailable: 503,
    errors.EngineTimeout: 504,
    errors.StoreUnavailable: 503,
    errors.RateLimited: 429,
    errors.PayloadTooLarge: 413,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def status_for(exc: errors.WagateError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def _wagate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.WagateError)
    status = status_for(exc)
    if status >= 500:
        log.error("request failed", extra={"path": request.url.path, "code": exc.code})
    response = error_response(status, exc.code, exc.message)
    if isinstance(exc, errors.RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only where and what: the rejected input itself may hold a secret.
    details = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(422, "validation_error", message, details=details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI's "error parsing the body": a body that is not UTF-8 is malformed JSON like
        # any other, and malformed JSON is a 422 here.
        return error_response(422, "validation_error", "body: not valid UTF-8 JSON")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    # No pooled connection in time, or the connection was lost: try again shortly.
    log.warning("database out of reach", extra={"path": request.url.path})
    response = error_response(503, "database_unavailable", "the database is busy or out of reach")
    response.headers["Retry-After"] = "1"
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.WagateError, _wagate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, _database_unreachable)
    app.add_exception_handler(Exception, _unexpected)
