"""Linking end to end through the HTTP API and a simulated phone, on every database backend."""

from __future__ import annotations

import asyncio
from datetime import datetime

from tests.apiclient import ApiClient

PHONE = "5511999990001"


async def test_link_qr_scan_connected(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    assert account["status"] == "unlinked"

    attempt = await api.link(tenant, account["id"])
    assert attempt["state"] == "open" and attempt["method"] == "qr"
    qr = await api.qr(tenant, account["id"])
    assert qr["attempt_id"] == attempt["id"] and qr["index"] == 0
    assert await api.scan(tenant, qr["code"], PHONE) == "linked"

    linked = await api.wait_status(tenant, account["id"], "connected")
    assert linked["phone"] == PHONE and linked["jid"].startswith(PHONE)
    [done] = await api.attempts(tenant, account["id"])
    assert done["outcome"] == "linked" and done["reason"] is None and done["qr_count"] == 1
    stages = [done[k] for k in ("started_at", "first_qr_at", "paired_at", "connected_at")]
    assert all(stages), done
    times = [datetime.fromisoformat(s) for s in stages]
    assert times == sorted(times)
    assert done["ended_at"] == done["connected_at"]
    # The code is gone once the attempt is over.
    r = await api.http.get(f"/v1/accounts/{account['id']}/qr", headers=tenant.auth)
    assert r.status_code == 404


async def test_relink_same_phone_no_duplicate_entry(api: ApiClient) -> None:
    """The seed's "Duplicate entry" failure: relinking one phone again and again in a workspace."""
    tenant = await api.tenant()
    first = await api.account(tenant, "first")
    second = await api.account(tenant, "second")
    await api.link_phone(tenant, first["id"], PHONE)

    for _ in range(3):
        # New attempts and cancels on the second account, then the phone links into it.
        await api.link(tenant, second["id"])
        await api.qr(tenant, second["id"])
        await api.cancel(tenant, second["id"])
        await api.link(tenant, second["id"])
        await api.cancel(tenant, second["id"])
        await api.link_phone(tenant, second["id"], PHONE)
        older = await api.wait_status(tenant, first["id"], "logged_out")
        assert older["status_reason"] == "superseded"
        # And back into the first account.
        await api.link_phone(tenant, first["id"], PHONE)
        older = await api.wait_status(tenant, second["id"], "logged_out")
        assert older["status_reason"] == "superseded"

    r = await api.http.get("/v1/accounts", params={"status": "connected"}, headers=tenant.auth)
    holders = [a for a in r.json() if a["phone"] == PHONE]
    assert [a["id"] for a in holders] == [first["id"]]
    outcomes = [a["outcome"] for a in await api.attempts(tenant, second["id"])]
    assert outcomes.count("cancelled") == 6 and outcomes.count("linked") == 3


async def test_same_phone_in_another_workspace_is_independent(api: ApiClient) -> None:
    a, b = await api.tenant("a"), await api.tenant("b")
    in_a, in_b = await api.account(a), await api.account(b)
    await api.link_phone(a, in_a["id"], PHONE)
    await api.link_phone(b, in_b["id"], PHONE)
    assert (await api.get_account(a, in_a["id"]))["status"] == "connected"


async def test_concurrent_link_calls_open_one_attempt(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    results = await asyncio.gather(*(api.link(tenant, account["id"]) for _ in range(50)))
    assert len({r["id"] for r in results}) == 1
    attempts = await api.attempts(tenant, account["id"])
    assert len(attempts) == 1 and attempts[0]["state"] == "open"


async def test_nobody_scans_six_codes_then_expired(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link(tenant, account["id"])
    seen = []
    for index in range(6):
        qr = await api.qr(tenant, account["id"], after_index=index - 1)
        seen.append(qr)
    assert [q["index"] for q in seen] == list(range(6))
    assert len({q["code"] for q in seen}) == 6
    lifetimes = [
        datetime.fromisoformat(q["expires_at"]) - datetime.fromisoformat(seen[0]["expires_at"])
        for q in seen
    ]
    assert lifetimes == sorted(lifetimes)
    await api.wait_status(tenant, account["id"], "unlinked")
    [attempt] = await api.attempts(tenant, account["id"])
    assert attempt["outcome"] == "expired" and attempt["qr_count"] == 6
    assert attempt["paired_at"] is None


async def test_scan_of_rotated_code_is_expired_and_attempt_stays_open(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link(tenant, account["id"])
    first = await api.qr(tenant, account["id"])
    await api.qr(tenant, account["id"], after_index=0)
    assert await api.scan(tenant, first["code"], PHONE) == "expired_code"
    [attempt] = await api.attempts(tenant, account["id"])
    assert attempt["state"] == "open"
    assert (await api.get_account(tenant, account["id"]))["status"] == "linking"
    current = await api.qr(tenant, account["id"])
    assert await api.scan(tenant, current["code"], PHONE) == "linked"
    await api.wait_status(tenant, account["id"], "connected")
