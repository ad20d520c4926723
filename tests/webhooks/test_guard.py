"""Webhooks never reach the gateway's own network (server-side request forgery): a workspace key
cannot point its webhook at loopback, private, link-local, multicast or unspecified addresses,
written in any form, either when it saves the URL or through a name that resolves there when the
gateway sends; ``WAGATE_WEBHOOK_ALLOW_PRIVATE=true`` allows them.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.apiclient import ApiClient
from tests.conftest import ADMIN_KEY
from tests.receiver import Receiver
from tests.webhooks.test_dispatcher import PHONE, wait_deliveries
from wagate.api.app import create_app
from wagate.config import Settings
from wagate.gateway import Gateway
from wagate.webhooks.guard import forbidden

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "0.0.0.0",
    "::",
    "169.254.169.254",
    "10.0.0.7",
    "172.16.4.4",
    "192.168.1.1",
    "100.64.0.1",
    "224.0.0.1",
    "fe80::1",
    "fc00::5",
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
]
PUBLIC_ADDRESSES = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden(address)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden(address)


class Names(AbstractResolver):
    """A resolver for made-up names, changed by the test (a DNS record that changes)."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.records:
            raise OSError(f"no such name: {host}")
        address = self.records[host]
        kind = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=kind,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@asynccontextmanager
async def running(
    database_url: str, tmp_path: Path, names: Names, **settings: Any
) -> AsyncIterator[ApiClient]:
    """An in-process gateway that resolves webhook hosts through ``names``."""
    config = Settings(
        database_url=database_url,
        engine="sim",
        sim_time_scale=0.01,
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,
        **settings,
    )
    app = create_app(gateway=Gateway(config, resolver=names))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://wagate.test") as http:
            yield ApiClient(http, app, ADMIN_KEY)


@pytest.fixture
async def guarded(
    tmp_path: Path, fresh_database_url: Any
) -> AsyncIterator[tuple[ApiClient, Names, Receiver]]:
    """A gateway that refuses non-public webhook addresses, the resolver it asks, and a real
    receiver on 127.0.0.1 that must never hear from it."""
    names = Names()
    receiver = Receiver()
    await receiver.start()
    url = await fresh_database_url("sqlite")
    async with running(
        url, tmp_path, names, webhook_allow_private=False, webhook_retry_min_seconds=0.05
    ) as api:
        yield api, names, receiver
    await receiver.stop()


TARGETS = [
    "http://127.0.0.1:{port}/hooks",
    "http://[::1]:{port}/hooks",
    "http://localhost:{port}/hooks",
    "http://2130706433:{port}/hooks",
    "http://127.1:{port}/hooks",
    "http://0x7f.0.0.1:{port}/hooks",
    "http://0.0.0.0:{port}/hooks",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]:{port}/hooks",
    "http://internal.example:{port}/hooks",  # a name that resolves to 10.0.0.7
]


@pytest.mark.parametrize("target", TARGETS)
async def test_a_webhook_url_on_the_gateways_network_is_refused_when_saved(
    guarded: tuple[ApiClient, Names, Receiver], target: str
) -> None:
    api, names, receiver = guarded
    names.records["localhost"] = "127.0.0.1"
    names.records["internal.example"] = "10.0.0.7"
    url = target.format(port=receiver.port)
    r = await api.http.post(
        "/v1/workspaces", json={"name": "evil", "webhook_url": url}, headers=api.admin
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input"
    assert "non-public address" in r.json()["error"]["message"]

    tenant = await api.tenant("acme")
    r = await api.http.patch(
        f"/v1/workspaces/{tenant.id}", json={"webhook_url": url}, headers=tenant.auth
    )
    assert r.status_code == 422, r.text
    r = await api.http.get(f"/v1/workspaces/{tenant.id}", headers=tenant.auth)
    assert r.json()["webhook_url"] is None  # nothing was saved


async def test_a_name_that_resolves_to_the_gateways_network_at_send_time_is_not_sent_to(
    guarded: tuple[ApiClient, Names, Receiver],
) -> None:
    """The name was public when saved; by the time the gateway sends, it resolves to the
    loopback address where a real receiver listens (DNS rebinding). Nothing reaches it; the
    delivery is dead at once, with a reason that says nothing about what listens there."""
    api, names, receiver = guarded
    names.records["hooks.example"] = "93.184.216.34"
    tenant = await api.tenant("acme")
    url = f"http://hooks.example:{receiver.port}/hooks"
    r = await api.http.patch(
        f"/v1/workspaces/{tenant.id}", json={"webhook_url": url}, headers=tenant.auth
    )
    assert r.status_code == 200, r.text

    names.records["hooks.example"] = "127.0.0.1"
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)

    def all_dead(rows: list[dict[str, Any]]) -> bool:
        return bool(rows) and all(d["status"] == "dead" for d in rows)

    rows = await wait_deliveries(api, tenant, all_dead)
    assert {(d["attempts"], d["last_status"], d["last_error"]) for d in rows} == {
        (1, None, "blocked_address")
    }
    assert receiver.requests == []
    assert "hooks.example" in names.asked


async def test_private_addresses_are_allowed_when_the_operator_says_so(
    tmp_path: Path, fresh_database_url: Any
) -> None:
    names = Names()
    names.records["hooks.internal"] = "127.0.0.1"
    receiver = Receiver()
    await receiver.start()
    url = await fresh_database_url("sqlite")
    try:
        async with running(url, tmp_path, names, webhook_allow_private=True) as api:
            hook = f"http://hooks.internal:{receiver.port}/hooks"
            tenant = await api.tenant("acme", webhook_url=hook)
            account = await api.account(tenant)
            await api.link_phone(tenant, account["id"], PHONE)
            await receiver.wait_for(lambda r: len(r.delivered) >= 3)
    finally:
        await receiver.stop()
