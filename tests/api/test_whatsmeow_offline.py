"""The real engine through the HTTP API on a machine that cannot reach WhatsApp.

Every link attempt must end on its own, within a bounded time, as ``failed`` with a reason that
names the cause; the account returns to ``unlinked``; the next attempt behaves the same; the
gateway keeps answering.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.apiclient import ApiClient, Tenant
from tests.whatsmeow_support import require_neonize, silent_host

BOUND = 90.0  # seconds an attempt may take at most, whatever the network does


async def ended_attempt(api: ApiClient, tenant: Tenant, account_id: str, attempt_id: str) -> Any:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        assert (await api.http.get("/healthz")).status_code == 200
        for attempt in await api.attempts(tenant, account_id):
            if attempt["id"] == attempt_id and attempt["outcome"] is not None:
                return attempt
        qr = await api.http.get(f"/v1/accounts/{account_id}/qr", headers=tenant.auth)
        if qr.status_code == 200:
            pytest.skip("this machine reaches WhatsApp: a real QR code was shown")
        await asyncio.sleep(0.05)
    raise AssertionError(f"attempt {attempt_id} still open after {BOUND} s")


async def two_attempts(api: ApiClient) -> list[tuple[dict[str, Any], float]]:
    tenant = await api.tenant()
    account = await api.account(tenant)
    seen = []
    for _ in range(2):
        started = time.monotonic()
        attempt = await api.link(tenant, account["id"], method="qr")
        ended = await ended_attempt(api, tenant, account["id"], attempt["id"])
        seen.append((ended, time.monotonic() - started))
        state = await api.get_account(tenant, account["id"])
        assert state["status"] == "unlinked"
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    return seen


async def test_offline_link_attempts_fail_with_a_reason(gateway_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    require_neonize()
    api = await gateway_factory(
        f"sqlite+aiosqlite:///{tmp_path}/offline.db", engine="whatsmeow", engine_hosts=1
    )
    for attempt, seconds in await two_attempts(api):
        assert attempt["outcome"] == "failed"
        assert attempt["reason"] in ("network_unreachable", "connection_refused", "connect_timeout")
        assert seconds < BOUND


async def test_silent_server_ends_attempts_at_the_connect_timeout(  # type: ignore[no-untyped-def]
    gateway_factory, tmp_path, monkeypatch
) -> None:
    require_neonize()
    with silent_host() as proxy:
        # whatsmeow dials through HTTPS_PROXY: a proxy that never answers is a silent server.
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        api = await gateway_factory(
            f"sqlite+aiosqlite:///{tmp_path}/silent.db",
            engine="whatsmeow",
            engine_hosts=1,
            engine_connect_timeout=1.5,
        )
        for attempt, seconds in await two_attempts(api):
            assert attempt["outcome"] == "failed"
            assert attempt["reason"] == "connect_timeout"
            assert 1.0 < seconds < 10.0
