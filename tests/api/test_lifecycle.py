"""Stop, start, log out, delete; network flaps and logouts from the phone; the sweeper."""

from __future__ import annotations

import asyncio
import time

from tests.apiclient import ApiClient, Tenant
from wagate.engines.sim import SimEngine

PHONE = "5511999990010"


def sim(api: ApiClient) -> SimEngine:
    assert api.app is not None
    engine = api.app.state.gateway.engine
    assert isinstance(engine, SimEngine)
    return engine


async def events_of(api: ApiClient, tenant: Tenant, account_id: str) -> list[str]:
    """Event types recorded for the account, in seq order (read straight from the database)."""
    from sqlalchemy import select

    from wagate.db.models import Event

    assert api.app is not None
    async with api.app.state.gateway.db.sessions() as session:
        rows = await session.execute(
            select(Event.type, Event.data).where(Event.account_id == account_id).order_by(Event.seq)
        )
        return [t if t != "account.status" else f"status:{d['status']}" for t, d in rows]


async def test_stop_start_logout_delete(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    path = f"/v1/accounts/{account['id']}"

    r = await api.http.post(f"{path}/stop", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    r = await api.http.post(f"{path}/stop", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    r = await api.http.post(f"{path}/start", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["status"] == "reconnecting"
    await api.wait_status(tenant, account["id"], "connected")
    assert len(await api.attempts(tenant, account["id"])) == 1  # no new link for a restart

    r = await api.http.post(f"{path}/logout", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["status"] == "logged_out"
    assert r.json()["status_reason"] == "logout"
    gateway = api.app.state.gateway  # type: ignore[union-attr]
    assert await gateway.auth.load(account["id"]) is None
    r = await api.http.post(f"{path}/logout", headers=tenant.auth)
    assert r.status_code == 409
    r = await api.http.post(f"{path}/start", headers=tenant.auth)
    assert r.status_code == 409

    await api.link_phone(tenant, account["id"], PHONE)
    r = await api.http.delete(path, headers=tenant.auth)
    assert r.status_code == 204
    assert (await api.http.get(path, headers=tenant.auth)).status_code == 404
    assert await gateway.auth.load(account["id"]) is None
    assert (await api.http.delete(path, headers=tenant.auth)).status_code == 404


async def test_network_flap_reconnects_without_new_qr(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    before = await events_of(api, tenant, account["id"])

    assert sim(api).server.network_flap(PHONE) == 1
    deadline = time.monotonic() + 5
    while len(after := (await events_of(api, tenant, account["id"]))[len(before) :]) < 4:
        assert time.monotonic() < deadline, after
        await asyncio.sleep(0.01)
    assert after == [
        "status:reconnecting",
        "session.disconnected",
        "status:connected",
        "session.connected",
    ]
    assert (await api.get_account(tenant, account["id"]))["status"] == "connected"
    assert len(await api.attempts(tenant, account["id"])) == 1


async def test_logout_from_phone_ends_logged_out_with_reason(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    assert sim(api).server.phone_logout(PHONE) == 1
    gone = await api.wait_status(tenant, account["id"], "logged_out")
    assert gone["status_reason"] == "logged_out_from_phone"
    assert "session.logged_out" in await events_of(api, tenant, account["id"])


async def test_sweeper_closes_an_attempt_whose_engine_went_silent(  # type: ignore[no-untyped-def]
    gateway_factory, fresh_database_url
) -> None:
    api = await gateway_factory(await fresh_database_url("sqlite"), attempt_silence_seconds=0.3)
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link(tenant, account["id"])
    await api.qr(tenant, account["id"])
    # The engine loses the session without telling anyone.
    await sim(api).cancel_link(account["id"])
    started = time.monotonic()
    await api.wait_status(tenant, account["id"], "unlinked", timeout=5)
    assert time.monotonic() - started < 3
    [attempt] = await api.attempts(tenant, account["id"])
    assert (attempt["outcome"], attempt["reason"]) == ("failed", "engine_silent")


async def test_a_busy_attempt_is_not_swept(gateway_factory, fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    # Codes rotate every 0.2 s (time scale 0.01), well inside a 1 s silence.
    api = await gateway_factory(await fresh_database_url("sqlite"), attempt_silence_seconds=1.0)
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link(tenant, account["id"])
    await asyncio.sleep(1.3)
    [attempt] = await api.attempts(tenant, account["id"])
    assert attempt["reason"] != "engine_silent"
