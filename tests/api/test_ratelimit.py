"""Rate limits on link attempts: 429 with Retry-After, only new attempts count, windows reset."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from tests.apiclient import ApiClient, Tenant
from wagate.config import Settings
from wagate.core.rates import Rate


async def _link(api: ApiClient, tenant: Tenant, account_id: str) -> object:
    return await api.http.post(
        f"/v1/accounts/{account_id}/link", json={"method": "qr"}, headers=tenant.auth
    )


def _assert_limited(r) -> int:  # type: ignore[no-untyped-def]
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited" and r.json()["error"]["message"]
    retry_after = r.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    return int(retry_after)


async def test_per_account_limit_answers_429_and_resets(gateway_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    api = await gateway_factory(
        database_url, link_rate_per_account="2/s", link_rate_per_workspace="off"
    )
    tenant = await api.tenant()
    account = await api.account(tenant)
    first = await api.link(tenant, account["id"])
    # The idempotent repeat of the open attempt is free, however often it comes.
    for _ in range(5):
        assert (await api.link(tenant, account["id"]))["id"] == first["id"]
    await api.cancel(tenant, account["id"])
    await api.link(tenant, account["id"])
    await api.cancel(tenant, account["id"])

    retry_after = _assert_limited(await _link(api, tenant, account["id"]))
    assert retry_after == 1  # a one-second window never asks for more
    assert len(await api.attempts(tenant, account["id"])) == 2  # the refused one left no row
    # Another account of the workspace is not held back by this account's limit.
    other = await api.account(tenant, "other")
    await api.link(tenant, other["id"])

    await asyncio.sleep(retry_after + 0.05)
    assert (await api.link(tenant, account["id"]))["state"] == "open"


async def test_per_workspace_limit(gateway_factory, fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    api = await gateway_factory(
        await fresh_database_url("sqlite"),
        link_rate_per_account="off",
        link_rate_per_workspace="3/2s",
    )
    tenant, neighbour = await api.tenant("busy"), await api.tenant("quiet")
    accounts = [await api.account(tenant, f"a{i}") for i in range(4)]
    for account in accounts[:3]:
        await api.link(tenant, account["id"])
    retry_after = _assert_limited(await _link(api, tenant, accounts[3]["id"]))
    assert 1 <= retry_after <= 2
    # Limits are per workspace: the neighbour links freely.
    await api.link(neighbour, (await api.account(neighbour))["id"])

    await asyncio.sleep(retry_after + 0.05)
    assert (await api.link(tenant, accounts[3]["id"]))["state"] == "open"


async def test_deleting_accounts_gives_the_workspace_no_attempts_back(
    gateway_factory, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    """Create an account, link, delete it, again and again: the workspace's limit still fills
    (deleting an account once deleted the attempts the limit counted)."""
    api = await gateway_factory(
        database_url, link_rate_per_account="off", link_rate_per_workspace="5/h"
    )
    tenant = await api.tenant()
    for n in range(5):
        account = await api.account(tenant, f"throwaway {n}")
        await api.link(tenant, account["id"])
        r = await api.http.delete(f"/v1/accounts/{account['id']}", headers=tenant.auth)
        assert r.status_code in (200, 204), r.text
    account = await api.account(tenant, "one more")
    _assert_limited(await _link(api, tenant, account["id"]))
    # The other workspaces are not held back by this one's.
    neighbour = await api.tenant("quiet")
    await api.link(neighbour, (await api.account(neighbour))["id"])


async def test_limit_survives_a_restart(gateway_factory, fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    url = await fresh_database_url("sqlite")
    api = await gateway_factory(url, link_rate_per_account="2/h")
    tenant = await api.tenant()
    account = await api.account(tenant)
    for _ in range(2):
        await api.link(tenant, account["id"])
        await api.cancel(tenant, account["id"])
    restarted = await gateway_factory(url, link_rate_per_account="2/h")
    retry_after = _assert_limited(await _link(restarted, tenant, account["id"]))
    assert 3500 < retry_after <= 3600


async def test_connected_account_gets_its_conflict_not_a_wait(
    gateway_factory, fresh_database_url
) -> None:  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"), link_rate_per_account="1/h")
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], "5511999990301")
    r = await _link(api, tenant, account["id"])
    assert r.status_code == 409, r.text


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10/h", Rate(10, 3600)),
        ("100/hour", Rate(100, 3600)),
        ("5/min", Rate(5, 60)),
        ("30/s", Rate(30, 1)),
        ("20/15min", Rate(20, 900)),
        ("2 / days", Rate(2, 86400)),
        ("off", Rate(0, 1)),
    ],
)
def test_rates_parse_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, rate: Rate
) -> None:
    monkeypatch.setenv("WAGATE_LINK_RATE_PER_ACCOUNT", text)
    assert Settings().link_rate_per_account == rate


@pytest.mark.parametrize("text", ["10", "10/fortnight", "ten/h", "10/0h", "10/ms", "-1/h", ""])
def test_bad_rates_fail_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("WAGATE_LINK_RATE_PER_WORKSPACE", text)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert "link_rate_per_workspace" in message and "invalid rate" in message
