"""Bad input gets a clear 4xx with the error body — never a 500."""

from __future__ import annotations

import uuid

import pytest


def assert_error(response, status: int, code: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body


@pytest.fixture
async def setup(gateway_factory, fresh_database_url):  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"))
    mine, other = await api.tenant("mine"), await api.tenant("other")
    account = await api.account(mine)
    foreign = await api.account(other)
    return api, mine, account, foreign


async def test_unknown_and_foreign_accounts_are_not_found(setup) -> None:  # type: ignore[no-untyped-def]
    api, mine, account, foreign = setup
    for account_id in (str(uuid.uuid4()), foreign["id"], "not-a-uuid"):
        for method, path in (
            ("GET", f"/v1/accounts/{account_id}"),
            ("POST", f"/v1/accounts/{account_id}/link"),
            ("DELETE", f"/v1/accounts/{account_id}/link"),
            ("GET", f"/v1/accounts/{account_id}/qr"),
            ("GET", f"/v1/accounts/{account_id}/attempts"),
        ):
            body = {"method": "qr"} if method == "POST" else None
            r = await api.http.request(method, path, json=body, headers=mine.auth)
            assert_error(r, 404, "not_found")


async def test_keys(setup) -> None:  # type: ignore[no-untyped-def]
    api, mine, account, _ = setup
    path = f"/v1/accounts/{account['id']}"
    assert_error(await api.http.get(path), 401, "unauthorized")
    assert_error(await api.http.get(path, headers={"Authorization": "Bearer nope"}), 401)
    assert_error(await api.http.get(path, headers={"Authorization": "Basic abc"}), 401)
    assert_error(await api.http.get(path, headers={"Authorization": mine.key}), 401)
    r = await api.http.post("/v1/workspaces", json={"name": "x"}, headers=mine.auth)
    assert_error(r, 403, "admin_required")


async def test_malformed_bodies(setup) -> None:  # type: ignore[no-untyped-def]
    api, mine, account, _ = setup
    link = f"/v1/accounts/{account['id']}/link"
    headers = {**mine.auth, "Content-Type": "application/json"}
    for content in (b"{", b"not json", b"[]", b"null", b'"qr"', b"\xff\xfe"):
        assert_error(await api.http.post(link, content=content, headers=headers), 422)
    for body in (
        {"method": "telepathy"},
        {"method": 1},
        {},
        {"method": "code"},
        {"method": "code", "phone": "0123456789"},
        {"method": "code", "phone": "+5511999"},
        {"method": "code", "phone": 5511999990000},
        {"method": "qr", "phone": "5511999990000"},
        {"method": "qr", "extra": True},
    ):
        assert_error(
            await api.http.post(link, json=body, headers=mine.auth), 422, "validation_error"
        )
    for body in ({}, {"label": ""}, {"label": 5}, {"label": "x" * 201}, {"label": None}):
        r = await api.http.post("/v1/accounts", json=body, headers=mine.auth)
        assert_error(r, 422, "validation_error")
    r = await api.http.get("/v1/accounts", params={"status": "bogus"}, headers=mine.auth)
    assert_error(r, 422)
    r = await api.http.get(
        f"/v1/accounts/{account['id']}/qr", params={"format": "gif"}, headers=mine.auth
    )
    assert_error(r, 422)
    scan = {"code": "x", "phone": "12"}
    assert_error(await api.http.post("/v1/sim/scan", json=scan, headers=mine.auth), 422)
    # Still nothing was created by all that.
    assert await api.attempts(mine, account["id"]) == []


async def test_state_conflicts(setup) -> None:  # type: ignore[no-untyped-def]
    api, mine, account, _ = setup
    r = await api.http.delete(f"/v1/accounts/{account['id']}/link", headers=mine.auth)
    assert_error(r, 404, "no_open_attempt")
    await api.link_phone(mine, account["id"], "5511999990002")
    r = await api.http.post(
        f"/v1/accounts/{account['id']}/link", json={"method": "qr"}, headers=mine.auth
    )
    assert_error(r, 409, "conflict")
    assert_error(await api.http.get("/v1/nowhere", headers=mine.auth), 404, "not_found")
    assert_error(await api.http.put("/v1/accounts", headers=mine.auth), 405)


async def test_unknown_code_scans(setup) -> None:  # type: ignore[no-untyped-def]
    api, mine, _, _ = setup
    assert await api.scan(mine, "2@nothing,a,b,c", "5511999990003") == "invalid_code"
