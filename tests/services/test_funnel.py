"""The link funnel of a scripted population equals what the script did: over HTTP and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.apiclient import ApiClient, Tenant

PHONE = "55119999904{:02d}"


async def sim(api: ApiClient, tenant: Tenant, path: str, **body: Any) -> None:
    r = await api.http.post(f"/v1/sim/{path}", json=body, headers=tenant.auth)
    assert r.status_code == 200, r.text


async def ended(api: ApiClient, tenant: Tenant, account_id: str) -> dict[str, Any]:
    for _ in range(2000):
        [attempt, *_] = await api.attempts(tenant, account_id)
        if attempt["state"] == "ended":
            return attempt
        await asyncio.sleep(0.01)
    raise AssertionError("the attempt never ended")


async def pair_code(api: ApiClient, tenant: Tenant, account_id: str) -> str:
    for _ in range(1000):
        [attempt, *_] = await api.attempts(tenant, account_id)
        if attempt["pair_code"]:
            return attempt["pair_code"]  # type: ignore[no-any-return]
        await asyncio.sleep(0.01)
    raise AssertionError("no pairing code")


def linear_quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (what "inclusive" percentiles mean)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def script(api: ApiClient, tenant: Tenant) -> None:
    """40 link attempts on 40 accounts, each with a known end."""
    accounts = [(await api.account(tenant, f"line{i}"))["id"] for i in range(40)]
    phones = iter(PHONE.format(i) for i in range(40))
    # 4 during a server outage: no code is ever shown.
    await sim(api, tenant, "faults", outage=True)
    for account_id in accounts[:4]:
        await api.link(tenant, account_id)
        assert (await ended(api, tenant, account_id))["reason"] == "server_unavailable"
    await sim(api, tenant, "faults", outage=False)
    # 6 nobody scans: they expire after six codes, meanwhile the rest goes on.
    for account_id in accounts[4:10]:
        await api.link(tenant, account_id)
    # 13 scanned on the first code, 4 on the second.
    for account_id in accounts[10:23]:
        await api.link_phone(tenant, account_id, next(phones))
    for account_id in accounts[23:27]:
        await api.link(tenant, account_id)
        code = await api.qr(tenant, account_id, after_index=0)
        assert await api.scan(tenant, code["code"], next(phones)) == "linked"
        await api.wait_status(tenant, account_id, "connected")
    # 8 cancelled after the first code.
    for account_id in accounts[27:35]:
        await api.link(tenant, account_id)
        await api.qr(tenant, account_id)
        await api.cancel(tenant, account_id)
    # 3 phones log the device out right after pairing.
    for account_id in accounts[35:38]:
        phone = next(phones)
        await sim(api, tenant, "faults", phone=phone, logout_after_pair=True)
        await api.link(tenant, account_id)
        assert await api.scan(tenant, (await api.qr(tenant, account_id))["code"], phone) == "linked"
        assert (await ended(api, tenant, account_id))["reason"] == "logged_out_from_phone"
    # 2 linked by pairing code.
    for account_id in accounts[38:40]:
        phone = next(phones)
        await api.link(tenant, account_id, method="code", phone=phone)
        code = await pair_code(api, tenant, account_id)
        r = await api.http.post(
            "/v1/sim/pair", json={"code": code, "phone": phone}, headers=tenant.auth
        )
        assert r.json()["result"] == "linked"
        await api.wait_status(tenant, account_id, "connected")
    for account_id in accounts[4:10]:
        assert (await ended(api, tenant, account_id))["outcome"] == "expired"


async def test_funnel_of_a_scripted_population(api: ApiClient, database_url: str) -> None:
    tenant = await api.tenant()
    other = await api.tenant("other")
    noise = await api.account(other)
    await api.link(other, noise["id"])  # another workspace's open attempt
    started = datetime.now(UTC)
    await script(api, tenant)

    r = await api.http.get("/v1/funnel", headers=tenant.auth)
    assert r.status_code == 200, r.text
    funnel = r.json()
    linked = [
        a
        for account in (await api.http.get("/v1/accounts", headers=tenant.auth)).json()
        for a in await api.attempts(tenant, account["id"])
        if a["outcome"] == "linked"
    ]
    seconds = [
        (
            datetime.fromisoformat(a["connected_at"]) - datetime.fromisoformat(a["started_at"])
        ).total_seconds()
        for a in linked
    ]
    assert len(seconds) == 19
    expected = {
        "unit": "link_attempt",
        "attempts": 40,
        "open": 0,
        "ended": 40,
        "first_code_shown": 36,
        "paired": 22,
        "connected": 19,
        "success_rate": 0.475,
        "qr_codes": 13 + 4 * 2 + 6 * 6 + 8 + 3,
        "qr_codes_per_attempt": round(68 / 40, 3),
        "time_to_link_seconds": {
            "p50": round(statistics.median(seconds), 3),
            "p90": round(linear_quantile(seconds, 0.9), 3),
        },
        "outcomes": {"cancelled": 8, "expired": 6, "failed": 7, "linked": 19},
        "reasons": {
            "cancelled": {"cancelled": 8},
            "expired": {"link_expired": 6},
            "failed": {"logged_out_from_phone": 3, "server_unavailable": 4},
            "linked": {"none": 19},
        },
    }
    assert funnel == expected

    # The admin sees both workspaces (the other one's attempt expired meanwhile).
    everything = (await api.http.get("/v1/funnel", headers=api.admin)).json()
    assert (everything["attempts"], everything["outcomes"]["expired"]) == (41, 7)
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    window = {"since": started.isoformat(), "until": later}
    assert (await api.http.get("/v1/funnel", params=window, headers=tenant.auth)).json() == funnel
    empty = (await api.http.get("/v1/funnel", params={"since": later}, headers=tenant.auth)).json()
    assert empty["attempts"] == 0 and empty["success_rate"] is None

    # The command line on the same database prints the same funnel.
    env = {**os.environ, "WAGATE_DATABASE_URL": database_url}
    cli = [sys.executable, "-m", "wagate", "funnel"]
    result = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--json", "--workspace", tenant.id],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == funnel
    table = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--workspace", tenant.id, "--since", started.isoformat()],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "120"},
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    for row in ("attempts", "40", "first code shown", "36", "47.5%", "server_unavailable"):
        assert row in table.stdout, (row, table.stdout)
    unknown = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--workspace", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert unknown.returncode == 2 and "no workspace nope" in unknown.stderr
