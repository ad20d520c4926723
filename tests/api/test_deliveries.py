"""``/v1/webhook-deliveries`` and ``PATCH /v1/workspaces/{id}``: who sees and changes what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.apiclient import ApiClient
from tests.receiver import Receiver
from tests.webhooks.test_signed import FAST, all_events, deliveries

PHONE = "5511999990003"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def api(gateway_factory: Any, fresh_database_url: Any) -> ApiClient:
    return await gateway_factory(await fresh_database_url("sqlite"), **FAST)  # type: ignore[no-any-return]


async def test_deliveries_are_scoped_and_paginated(api: ApiClient, receiver: Receiver) -> None:
    acme = await api.tenant("acme", webhook_url=receiver.url)
    globex = await api.tenant("globex", webhook_url=receiver.url)
    await api.link_phone(acme, (await api.account(acme))["id"], PHONE)
    await api.link_phone(globex, (await api.account(globex))["id"], PHONE)
    acme_events, globex_events = await all_events(api, acme), await all_events(api, globex)

    mine = await deliveries(api, acme, limit=500)
    assert [d["event_id"] for d in mine] == [e["id"] for e in acme_events]
    assert {d["workspace_id"] for d in mine} == {acme.id}
    assert [d["event_type"] for d in mine] == [e["type"] for e in acme_events]
    r = await api.http.get("/v1/webhook-deliveries", params={"limit": 500}, headers=api.admin)
    assert len(r.json()["deliveries"]) == len(acme_events) + len(globex_events)

    pages: list[int] = []
    after = 0
    while True:
        r = await api.http.get(
            "/v1/webhook-deliveries", params={"limit": 3, "after": after}, headers=acme.auth
        )
        page = r.json()
        if not page["deliveries"]:
            break
        assert len(page["deliveries"]) <= 3
        pages += [d["event_id"] for d in page["deliveries"]]
        after = page["next_after"]
    assert pages == [e["id"] for e in acme_events]

    for params in ({"limit": 501}, {"limit": 0}, {"status": "lost"}, {"after": -1}):
        r = await api.http.get("/v1/webhook-deliveries", params=params, headers=acme.auth)
        assert r.status_code == 422, (params, r.text)
    r = await api.http.post(f"/v1/webhook-deliveries/{mine[0]['id']}/retry", headers=globex.auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.http.post("/v1/webhook-deliveries/nope/retry", headers=acme.auth)
    assert r.status_code == 404
    r = await api.http.get("/v1/webhook-deliveries")
    assert r.status_code == 401


async def test_patch_workspace(api: ApiClient, receiver: Receiver) -> None:
    acme = await api.tenant("acme")
    globex = await api.tenant("globex")
    path = f"/v1/workspaces/{acme.id}"

    r = await api.http.patch(path, json={"webhook_url": receiver.url}, headers=acme.auth)
    assert r.status_code == 200 and r.json()["webhook_url"] == receiver.url, r.text
    assert r.json()["webhook_format"] == "wagate" and r.json()["link_policy"] == "replace"
    r = await api.http.patch(path, json={"link_policy": "reject"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["link_policy"] == "reject"
    assert r.json()["webhook_url"] == receiver.url  # fields not sent stay as they were
    r = await api.http.patch(path, json={"link_policy": "replace"}, headers=globex.auth)
    assert r.status_code == 404
    for body in (
        {"webhook_format": "slack"},
        {"link_policy": "ask"},
        {"link_policy": None},
        {"webhook_format": None},
        {"webhook_url": "not a url"},
        {"name": "renamed"},
    ):
        r = await api.http.patch(path, json=body, headers=acme.auth)
        assert r.status_code == 422, (body, r.text)
    r = await api.http.get(path, headers=acme.auth)
    assert r.json()["link_policy"] == "reject" and r.json()["webhook_format"] == "wagate"

    account = await api.account(acme)
    await api.link_phone(acme, account["id"], PHONE)
    before = await deliveries(api, acme, limit=500)
    assert len(before) == len(await all_events(api, acme))
    # webhook_url null turns webhooks off: later events get no delivery.
    r = await api.http.patch(path, json={"webhook_url": None}, headers=acme.auth)
    assert r.status_code == 200 and r.json()["webhook_url"] is None
    r = await api.http.post(f"/v1/accounts/{account['id']}/logout", headers=acme.auth)
    assert r.status_code == 200
    assert len(await all_events(api, acme)) > len(before)
    assert [d["id"] for d in await deliveries(api, acme, limit=500)] == [d["id"] for d in before]
