"""One error model for every failure, limits on bodies and strings, and a documented API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.apiclient import ApiClient, Tenant
from wagate.api.limits import MAX_BODY_BYTES


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
async def setup(gateway_factory, fresh_database_url) -> tuple[ApiClient, Tenant]:  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"))
    return api, await api.tenant()


def _padded(body: dict[str, Any], size: int) -> bytes:
    """Valid JSON of exactly ``size`` bytes: the body, then whitespace."""
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


async def test_body_limit_by_content_length_and_by_streamed_bytes(setup) -> None:  # type: ignore[no-untyped-def]
    api, tenant = setup
    headers = {**tenant.auth, "Content-Type": "application/json"}
    fits = _padded({"label": "fits"}, MAX_BODY_BYTES)
    r = await api.http.post("/v1/accounts", content=fits, headers=headers)
    assert r.status_code == 201, r.text

    too_big = _padded({"label": "too big"}, MAX_BODY_BYTES + 1)
    r = await api.http.post("/v1/accounts", content=too_big, headers=headers)
    assert_error(r, 413, "payload_too_large")

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    # No Content-Length (chunked): the bytes are counted as they arrive.
    r = await api.http.post("/v1/accounts", content=chunks(too_big), headers=headers)
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")
    r = await api.http.post("/v1/accounts", content=chunks(fits), headers=headers)
    assert r.status_code == 201, r.text
    # A Content-Length that understates the body does not get it through either.
    lying = {**headers, "Content-Length": "10"}
    r = await api.http.post("/v1/accounts", content=chunks(too_big), headers=lying)
    assert r.status_code in (413, 422), r.text
    labels = [a["label"] for a in (await api.http.get("/v1/accounts", headers=tenant.auth)).json()]
    assert labels == ["fits", "fits"]


async def test_long_strings_and_nul_are_422_not_500(setup) -> None:  # type: ignore[no-untyped-def]
    api, tenant = setup
    account = await api.account(tenant)
    cases = [
        ("POST", "/v1/accounts", {"label": "x" * 201}),
        ("POST", "/v1/accounts", {"label": "a\u0000b"}),
        ("POST", "/v1/accounts", {"label": "   "}),
        ("POST", "/v1/accounts", {"label": "ok", "workspace_id": "w" * 37}),
        (
            "PATCH",
            f"/v1/workspaces/{tenant.id}",
            {"webhook_url": "https://x.example/" + "a" * 2040},
        ),
        ("PATCH", f"/v1/workspaces/{tenant.id}", {"webhook_url": "https://x.example/" + "é" * 400}),
        ("PATCH", f"/v1/workspaces/{tenant.id}", {"webhook_url": "ftp://x.example/"}),
        ("POST", "/v1/sim/scan", {"code": "c" * 1025, "phone": "5511999990000"}),
        ("POST", "/v1/sim/scan", {"code": "\u0000", "phone": "5511999990000"}),
        (
            "POST",
            f"/v1/accounts/{account['id']}/messages",
            {"to": "5511999990000", "text": "\u0000"},
        ),
    ]
    for method, path, body in cases:
        r = await api.http.request(method, path, json=body, headers=tenant.auth)
        assert_error(r, 422, "validation_error")
    raw = b'{"label": "a\\ud800b"}'  # a lone surrogate: not encodable
    headers = {**tenant.auth, "Content-Type": "application/json"}
    assert_error(
        await api.http.post("/v1/accounts", content=raw, headers=headers), 422, "validation_error"
    )
    for path in ("/v1/accounts/a%00b", "/v1/events?account_id=%00", "/v1/accounts/x%00/qr"):
        assert_error(await api.http.get(path, headers=tenant.auth), 422, "validation_error")
    for path in ("/v1/events?after=9223372036854775808", "/v1/webhook-deliveries?after=1e99"):
        assert_error(await api.http.get(path, headers=tenant.auth), 422, "validation_error")
    # Bytes that are not UTF-8 are malformed JSON like any other.
    r = await api.http.post("/v1/accounts", content=b'{"label": "\xc3\x28"}', headers=headers)
    assert_error(r, 422, "validation_error")
    r = await api.http.get(f"/v1/accounts/{'x' * 5000}", headers=tenant.auth)
    assert_error(r, 404, "not_found")


async def test_every_failure_has_the_error_body(setup) -> None:  # type: ignore[no-untyped-def]
    api, tenant = setup
    account = await api.account(tenant)
    path = f"/v1/accounts/{account['id']}"
    assert_error(await api.http.get(path), 401, "unauthorized")
    r = await api.http.post("/v1/workspaces", json={"name": "x"}, headers=tenant.auth)
    assert_error(r, 403, "admin_required")
    assert_error(await api.http.get("/v1/nowhere", headers=tenant.auth), 404, "not_found")
    assert_error(await api.http.put(path, headers=tenant.auth), 405, "method_not_allowed")
    r = await api.http.post(
        f"{path}/messages", json={"to": "5511999990000", "text": "x"}, headers=tenant.auth
    )
    assert_error(r, 409, "conflict")
    assert_error(await api.http.delete(f"{path}/link", headers=tenant.auth), 404, "no_open_attempt")
    error = assert_error(
        await api.http.post(f"{path}/link", json={}, headers=tenant.auth), 422, "validation_error"
    )
    assert "method" in error["message"]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "array" and "items" in schema:
        return _resolve(document, schema["items"])
    return schema


def _has_example(document: dict[str, Any], media: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    schema = media.get("schema")
    return not schema or bool(_resolve(document, schema).get("examples"))


async def test_openapi_documents_every_route_with_examples(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    r = await api.http.get("/openapi.json")
    assert r.status_code == 200
    document = r.json()
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and not _has_example(document, body):
                missing.append(f"{label}: request body")
            for status, response in operation["responses"].items():
                media = response.get("content", {}).get("application/json")
                if media is None:
                    continue
                if not _has_example(document, media):
                    missing.append(f"{label}: response {status}")
                if not status.startswith("2") and status != "default":
                    ref = media.get("schema", {}).get("$ref", "")
                    assert ref.endswith("/ErrorBody"), f"{label} {status}: not the error body"
    assert not missing, missing
