"""Prometheus metrics against what a scripted run of link attempts really did; readiness."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.apiclient import ApiClient, Tenant
from wagate.metrics import Metrics

PHONES = ("5511999990301", "5511999990302")


async def scrape(api: ApiClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await api.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def one(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


async def sim(api: ApiClient, tenant: Tenant, path: str, **body: Any) -> dict[str, Any]:
    r = await api.http.post(f"/v1/sim/{path}", json=body, headers=tenant.auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def wait_attempt_ended(api: ApiClient, tenant: Tenant, account_id: str) -> dict[str, Any]:
    for _ in range(1000):
        [attempt, *_] = await api.attempts(tenant, account_id)
        if attempt["state"] == "ended":
            return attempt
        await asyncio.sleep(0.01)
    raise AssertionError("attempt never ended")


async def test_link_metrics_count_what_happened(api: ApiClient) -> None:
    tenant = await api.tenant()
    ids = [(await api.account(tenant, f"line{i}"))["id"] for i in range(5)]
    for account_id, phone in zip(ids, PHONES, strict=False):
        await api.link_phone(tenant, account_id, phone)
    await api.link(tenant, ids[2])
    await api.qr(tenant, ids[2])
    await api.cancel(tenant, ids[2])
    await api.link(tenant, ids[3])  # nobody scans: expires after six codes
    await sim(api, tenant, "faults", outage=True)
    await api.link(tenant, ids[4])
    outage = await wait_attempt_ended(api, tenant, ids[4])
    await sim(api, tenant, "faults", outage=False)
    expired = await wait_attempt_ended(api, tenant, ids[3])
    assert (outage["outcome"], outage["reason"]) == ("failed", "server_unavailable")
    assert (expired["outcome"], expired["qr_count"]) == ("expired", 6)

    attempts = [a for i in ids for a in await api.attempts(tenant, i)]
    m = await scrape(api)
    for outcome, n in (("linked", 2), ("cancelled", 1), ("expired", 1), ("failed", 1)):
        assert m[one("wagate_link_attempts_total", outcome=outcome)] == n, outcome
    qr_total = sum(a["qr_count"] for a in attempts)
    assert qr_total >= 9
    assert m[one("wagate_qr_codes_total")] == qr_total
    assert m[one("wagate_engine_events_total", type="QrCode")] == qr_total
    assert m[one("wagate_engine_events_total", type="Connected")] == 2
    linked = [a for a in attempts if a["outcome"] == "linked"]
    seconds = sum(
        (
            datetime.fromisoformat(a["connected_at"]) - datetime.fromisoformat(a["started_at"])
        ).total_seconds()
        for a in linked
    )
    assert m[one("wagate_time_to_link_seconds_count")] == 2
    assert m[one("wagate_time_to_link_seconds_sum")] == pytest.approx(seconds, abs=0.01)
    assert m[one("wagate_accounts", status="connected")] == 2
    assert m[one("wagate_accounts", status="unlinked")] == 3
    assert m[one("wagate_accounts", status="failed")] == 0
    assert one("wagate_restore_seconds") in m


async def test_each_gateway_counts_its_own(gateway_factory: Any, tmp_path: Path) -> None:
    first = await gateway_factory(f"sqlite+aiosqlite:///{tmp_path}/one.db")
    second = await gateway_factory(f"sqlite+aiosqlite:///{tmp_path}/two.db")
    tenant = await first.tenant()
    account = await first.account(tenant)
    await first.link_phone(tenant, account["id"], PHONES[0])
    linked = one("wagate_link_attempts_total", outcome="linked")
    # Counted once the attempt's transaction has committed, a moment after the status shows.
    for _ in range(100):
        if (await scrape(first)).get(linked) == 1:
            break
        await asyncio.sleep(0.02)
    assert (await scrape(first))[linked] == 1
    assert linked not in await scrape(second)
    assert (await scrape(second))[one("wagate_qr_codes_total")] == 0


def test_observe_delivery_for_the_dispatcher() -> None:
    metrics = Metrics()
    metrics.observe_delivery("delivered", 0.02)
    metrics.observe_delivery("failed", 3.0)
    metrics.observe_delivery("delivered", 0.2)
    m = parse(metrics.render().decode())
    assert m[one("wagate_webhook_deliveries_total", result="delivered")] == 2
    assert m[one("wagate_webhook_deliveries_total", result="failed")] == 1
    assert m[one("wagate_webhook_delivery_seconds_count")] == 3
    assert m[one("wagate_webhook_delivery_seconds_bucket", le="0.05")] == 1


async def test_sim_routes_drive_faults_and_phones(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    phone = PHONES[0]
    faults = await sim(api, tenant, "faults", phone=phone, expire_scans=True)
    assert faults == {
        "phone": phone,
        "outage": False,
        "expire_scans": True,
        "logout_after_pair": False,
        "slow_pairing": 0.0,
        "flapping": False,
    }
    await api.link(tenant, account["id"])
    code = (await api.qr(tenant, account["id"]))["code"]
    assert await api.scan(tenant, code, phone) == "expired_code"
    assert await api.scan(tenant, code, PHONES[1]) == "linked"  # only that phone is affected
    await api.wait_status(tenant, account["id"], "connected")

    assert await sim(api, tenant, f"phones/{PHONES[1]}/flap") == {"devices": 1}
    # The reconnect takes milliseconds at this clock: the event log shows the drop.
    for _ in range(500):
        r = await api.http.get(
            "/v1/events", params={"account_id": account["id"]}, headers=tenant.auth
        )
        statuses = [
            e["data"]["status"] for e in r.json()["events"] if e["type"] == "account.status"
        ]
        if statuses[-2:] == ["reconnecting", "connected"]:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"no reconnect after the flap: {statuses}")
    assert await sim(api, tenant, f"phones/{PHONES[1]}/logout") == {"devices": 1}
    gone = await api.wait_status(tenant, account["id"], "logged_out")
    assert gone["status_reason"] == "logged_out_from_phone"
    assert await sim(api, tenant, f"phones/{PHONES[1]}/logout") == {"devices": 0}

    for bad in ({"outage": "sometimes"}, {"laser": True}, {"slow_pairing": -1}):
        r = await api.http.post("/v1/sim/faults", json=bad, headers=tenant.auth)
        assert r.status_code == 422, bad
    r = await api.http.post("/v1/sim/phones/12/logout", headers=tenant.auth)
    assert r.status_code == 422
    r = await api.http.post("/v1/sim/faults", json={"outage": True})
    assert r.status_code == 401


async def test_readyz_answers_503_when_the_database_is_gone(
    api: ApiClient, database_url: str
) -> None:
    r = await api.http.get("/readyz")
    assert r.status_code == 200 and r.json()["database"] is True
    assert api.app is not None
    db = api.app.state.gateway.db
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # The file becomes a directory: nothing can open it as a database any more.
        assert url.database is not None
        os.remove(url.database)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(url.database + suffix):
                os.remove(url.database + suffix)
        os.mkdir(url.database)
        await db.engine.dispose()
    else:
        from tests.conftest import _admin, service_url

        backend = "postgres" if url.get_backend_name().startswith("postgres") else "mysql"
        force = " WITH (FORCE)" if backend == "postgres" else ""
        await _admin(service_url(backend), f"DROP DATABASE {url.database}{force}")
        # MySQL keeps serving ``SELECT 1`` on a connection whose database was dropped: only a new
        # connection finds it gone.
        await db.engine.dispose()
    r = await api.http.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "status": "unavailable",
        "database": False,
        "engine": True,
        "restored": True,
    }
    if url.get_backend_name() == "sqlite":
        shutil.rmtree(url.database)  # type: ignore[arg-type]
