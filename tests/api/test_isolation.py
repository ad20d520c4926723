"""Tenant isolation over EVERY route of the OpenAPI document.

The rule, route by route (a route added later is picked up by itself):

- A route with a resource id in its path, called with workspace A's key and workspace B's real
  ids, answers 404 — never 403, never B's data — unless it is listed below.
- ``ADMIN_ONLY``: answers 403 ``admin_required`` to any workspace key, whatever the ids, so it
  tells nothing about other workspaces (the admin's own scoping is in test_keys).
- ``OWN_LISTS``: no resource id; answers 200 with nothing of B's in it.
- ``CREATES``: creating with B's workspace id is 404; without one, the resource is A's.
- ``SIMULATOR``: controls of the simulated WhatsApp network (engine ``sim`` only). They hold no
  workspace data and must not echo B's ids; a phone's actions (log out, flap, a message to it),
  called with B's phone, reach none of B's devices (``{"devices": 0}``, B stays connected).
- ``OPERATOR``: health and metrics, unauthenticated, aggregated; nothing of B's in them.

A route with no resource id that is in none of these lists fails the test until it is
classified; so does a path parameter the test does not know how to fill with B's id.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.apiclient import ApiClient, Tenant

PHONE_A, PHONE_B = "5511999990401", "5511999990402"

ADMIN_ONLY = {
    ("POST", "/v1/workspaces"),
    ("POST", "/v1/workspaces/{workspace_id}/keys"),
    ("GET", "/v1/workspaces/{workspace_id}/keys"),
    ("DELETE", "/v1/workspaces/{workspace_id}/keys/{key_id}"),
    ("GET", "/v1/cluster"),
}
OWN_LISTS = {
    ("GET", "/v1/accounts"),
    ("GET", "/v1/events"),
    ("GET", "/v1/webhook-deliveries"),
    ("GET", "/v1/funnel"),
}
CREATES = {("POST", "/v1/accounts")}
SIMULATOR_PREFIX = "/v1/sim/"
OPERATOR = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


@dataclass
class World:
    api: ApiClient
    a: Tenant
    b: Tenant
    ids: dict[str, str]  # path parameter name → B's real id

    def leaks(self, text: str) -> list[str]:
        return [f"{k}={v}" for k, v in self.ids.items() if v in text]


@pytest.fixture
async def world(gateway_factory, fresh_database_url) -> World:  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"))
    a = await api.tenant("a")
    # B's webhook receiver is down: its deliveries stay pending, so B has delivery ids.
    b = await api.tenant("b", webhook_url="http://127.0.0.1:9/hook")
    await api.link_phone(a, (await api.account(a))["id"], PHONE_A)
    b_account = await api.account(b)
    await api.link_phone(b, b_account["id"], PHONE_B)
    r = await api.http.post(
        f"/v1/accounts/{b_account['id']}/messages",
        json={"to": PHONE_A, "text": "for B only", "client_ref": "b-1"},
        headers=b.auth,
    )
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    r = await api.http.post(f"/v1/workspaces/{b.id}/keys", headers=api.admin)
    assert r.status_code == 201, r.text
    key_id = r.json()["id"]
    r = await api.http.get("/v1/webhook-deliveries", headers=b.auth)
    assert r.status_code == 200 and r.json()["deliveries"], r.text
    ids = {
        "workspace_id": b.id,
        "account_id": b_account["id"],
        "message_id": message_id,
        "key_id": key_id,
        "delivery_id": r.json()["deliveries"][0]["id"],
        "phone": PHONE_B,
    }
    return World(api, a, b, ids)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _body(document: dict[str, Any], operation: dict[str, Any]) -> Any:
    """The request body's first documented example: a valid body, so that validation cannot
    answer before the scoping does."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema = _resolve(document, content["application/json"]["schema"])
    assert schema.get("examples"), f"{operation['operationId']}: request body has no example"
    return schema["examples"][0]


def _routes(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


async def _call(world: World, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    # A stream (SSE) that wrongly opened would hang: bound every call.
    return await asyncio.wait_for(
        world.api.http.request(method, path, json=body, headers=headers), timeout=10
    )


async def test_every_route_hides_other_workspaces(world: World) -> None:
    api, a, b = world.api, world.a, world.b
    assert api.app is not None
    document = api.app.openapi()
    unclassified: list[str] = []
    checked = 0
    for method, template, operation in _routes(document):
        route = (method, template)
        params = re.findall(r"{(\w+)}", template)
        unknown = [p for p in params if p not in world.ids]
        assert not unknown, f"{method} {template}: add B's id for {unknown} to the world fixture"
        path = template.format(**world.ids)
        body = _body(document, operation)
        if route in OPERATOR or template.startswith(SIMULATOR_PREFIX):
            if isinstance(body, dict) and "to" in body:
                body = {**body, "to": PHONE_B}  # a simulated message to B's number
            r = await _call(world, method, path, body, a.auth)
            assert r.status_code < 500, (route, r.text)
            assert not world.leaks(r.text.replace(PHONE_B, "")), (route, r.text)
            if "{phone}" in template or template == "/v1/sim/messages":
                assert r.json() == {"devices": 0}, (route, r.text)  # B's devices out of reach
        elif route in ADMIN_ONLY:
            for who in (world.ids, {**world.ids, "workspace_id": a.id}):
                r = await _call(world, method, template.format(**who), body, a.auth)
                assert r.status_code == 403, (route, r.text)
                assert r.json()["error"]["code"] == "admin_required"
        elif route in OWN_LISTS:
            r = await _call(world, method, path, body, a.auth)
            assert r.status_code == 200, (route, r.text)
            assert not world.leaks(r.text), (route, world.leaks(r.text))
        elif route in CREATES:
            r = await _call(world, method, path, {**body, "workspace_id": b.id}, a.auth)
            assert r.status_code == 404, (route, r.text)
            r = await _call(world, method, path, body, a.auth)
            assert r.status_code == 201 and r.json()["workspace_id"] == a.id, (route, r.text)
        elif params:
            r = await _call(world, method, path, body, a.auth)
            assert r.status_code == 404, (f"{method} {template} with B's ids", r.text)
            assert r.json()["error"]["code"] in ("not_found", "no_open_attempt"), r.text
            assert not world.leaks(r.text.replace(path, "")), (route, r.text)
        else:
            unclassified.append(f"{method} {template}")
            continue
        checked += 1
    assert not unclassified, f"classify these routes in test_isolation.py: {unclassified}"
    assert checked >= 30  # the document really was walked

    # B noticed nothing: its account, message, key and settings are as they were.
    account = await api.get_account(b, world.ids["account_id"])
    assert account["status"] == "connected" and account["phone"] == PHONE_B
    r = await api.http.get(
        f"/v1/accounts/{world.ids['account_id']}/messages/{world.ids['message_id']}",
        headers=b.auth,
    )
    assert r.status_code == 200 and r.json()["text"] == "for B only", r.text
    keys = (await api.http.get(f"/v1/workspaces/{b.id}/keys", headers=api.admin)).json()
    assert all(k["revoked_at"] is None for k in keys), keys
    r = await api.http.get(f"/v1/workspaces/{b.id}", headers=b.auth)
    assert r.json()["webhook_url"] == "http://127.0.0.1:9/hook", r.text


async def test_lists_hold_only_own_items(world: World) -> None:
    api, a = world.api, world.a
    accounts = (await api.http.get("/v1/accounts", headers=a.auth)).json()
    assert len(accounts) == 1 and accounts[0]["workspace_id"] == a.id
    events = (await api.http.get("/v1/events", headers=a.auth)).json()["events"]
    assert events and {e["workspace_id"] for e in events} == {a.id}
    r = await api.http.get(
        "/v1/events", params={"account_id": world.ids["account_id"]}, headers=a.auth
    )
    assert r.status_code in (200, 404) and not r.json().get("events"), r.text
    funnel = (await api.http.get("/v1/funnel", headers=a.auth)).json()
    everyone = (await api.http.get("/v1/funnel", headers=api.admin)).json()
    assert (funnel["attempts"], everyone["attempts"]) == (1, 2)
    deliveries = (await api.http.get("/v1/webhook-deliveries", headers=a.auth)).json()
    assert deliveries["deliveries"] == []
