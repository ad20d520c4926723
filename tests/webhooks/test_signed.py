"""Signed webhooks end to end: a real receiver on 127.0.0.1, the gateway driven through its HTTP
API and a simulated phone (DESIGN §7)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.apiclient import ApiClient, Tenant
from tests.receiver import Receiver, verify_blazz, verify_wagate

PHONE = "5511999990001"
FAST = {"webhook_retry_min_seconds": 0.05, "webhook_retry_max_seconds": 0.2}


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        await receiver.stop()


async def all_events(api: ApiClient, tenant: Tenant) -> list[dict[str, Any]]:
    r = await api.http.get("/v1/events", params={"limit": 1000}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    return r.json()["events"]  # type: ignore[no-any-return]


async def deliveries(api: ApiClient, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    r = await api.http.get("/v1/webhook-deliveries", params=params, headers=tenant.auth)
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]  # type: ignore[no-any-return]


async def test_flaky_receiver_gets_every_event_in_order_signed(
    gateway_factory: Any, database_url: str, receivers: Callable[..., Receiver]
) -> None:
    secret: list[str] = []

    def respond(n: int, headers: dict[str, str], body: bytes) -> int:
        if n < 3:
            return 500
        return 200 if verify_wagate(secret[0], headers, body, time.time()) else 401

    receiver = receivers(respond=respond)
    await receiver.start()
    api = await gateway_factory(database_url, **FAST)
    tenant = await api.tenant(webhook_url=receiver.url)
    secret.append(tenant.webhook_secret)
    quiet = await api.tenant("no hooks")  # no webhook_url: its events get no delivery rows
    account = await api.account(tenant)
    await api.account(quiet)
    await api.link_phone(tenant, account["id"], PHONE)
    await api.link_phone(quiet, (await api.account(quiet, "two"))["id"], PHONE)

    events = await all_events(api, tenant)
    assert len(events) >= 8 and events[-1]["type"] == "session.connected"
    await receiver.wait_for(lambda r: len(r.delivered) >= len(events))

    # Every event arrived, exactly once as a 2xx, in seq order, and every signature verified.
    got = [r.json() for r in receiver.delivered]
    assert got == events
    assert [e["seq"] for e in got] == list(range(1, len(events) + 1))
    assert all(r.status in (200, 500) for r in receiver.requests)  # never a bad signature (401)
    # The first event was refused three times and retried under the same delivery id and body.
    first = receiver.requests[:4]
    assert [r.status for r in first] == [500, 500, 500, 200]
    assert {r.headers["x-wagate-delivery"] for r in first} == {str(events[0]["id"])}
    assert {r.body for r in first} == {first[0].body}
    assert all(r.headers["x-wagate-event"] == r.json()["type"] for r in receiver.requests)
    # Nothing went out of order, retries included.
    seqs = [r.json()["seq"] for r in receiver.requests]
    assert seqs == sorted(seqs)

    await _settled(api, tenant)  # results are committed a moment after the receiver answers
    rows = await deliveries(api, tenant)
    assert [d["event_id"] for d in rows] == [e["id"] for e in events]
    assert all(d["status"] == "delivered" and d["last_error"] is None for d in rows)
    assert rows[0]["attempts"] == 4 and rows[0]["last_status"] == 200
    assert await deliveries(api, quiet) == []
    assert len(await all_events(api, quiet)) >= 8


async def test_blazz_format_for_a_backend_built_for_the_replaced_service(
    gateway_factory: Any, fresh_database_url: Any, receivers: Callable[..., Receiver]
) -> None:
    secret: list[str] = []

    def respond(n: int, headers: dict[str, str], body: bytes) -> int:
        return 200 if verify_blazz(secret[0], headers, body, time.time()) else 401

    receiver = receivers(respond=respond)
    await receiver.start()
    api = await gateway_factory(await fresh_database_url("sqlite"), **FAST)
    tenant = await api.tenant()
    secret.append(tenant.webhook_secret)
    r = await api.http.patch(
        f"/v1/workspaces/{tenant.id}",
        json={"webhook_url": receiver.url, "webhook_format": "blazz"},
        headers=tenant.auth,
    )
    assert r.status_code == 200 and r.json()["webhook_format"] == "blazz", r.text
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    r = await api.http.post(f"/v1/accounts/{account['id']}/logout", headers=tenant.auth)
    assert r.status_code == 200, r.text
    await receiver.wait_for(lambda r: any(b"session_disconnected" in q.body for q in r.requests))

    assert all(q.status == 200 for q in receiver.requests)  # every signature verified
    bodies = [q.json() for q in receiver.requests]
    assert all(set(b) == {"event", "data"} for b in bodies)
    names = [b["event"] for b in bodies]
    assert names == [
        "qr_code_generated",
        "session_authenticated",
        "session_ready",
        "session_disconnected",
    ]
    qr, authenticated, ready, gone = (b["data"] for b in bodies)
    for data in (qr, authenticated, ready, gone):
        assert data["session_id"] == account["id"] and data["workspace_id"] == tenant.id
    assert qr["qr_code"].startswith("data:image/png;base64,")
    assert base64.b64decode(qr["qr_code"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert qr["qr_count"] == 1 and isinstance(qr["expires_in"], int) and qr["expires_in"] >= 0
    assert authenticated["phone_number"] == PHONE
    assert ready == {**ready, "phone_number": PHONE, "status": "connected"}
    assert gone["reason"] == "logout"

    # Events blazz had no name for were settled without a request, not left pending.
    await _settled(api, tenant)
    rows = await deliveries(api, tenant)
    assert len(rows) == len(await all_events(api, tenant)) > len(receiver.requests)


async def _settled(api: ApiClient, tenant: Tenant, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while await deliveries(api, tenant, status="pending"):
        assert time.monotonic() < deadline, "deliveries still pending"
        await asyncio.sleep(0.05)
    assert not await deliveries(api, tenant, status="dead")
