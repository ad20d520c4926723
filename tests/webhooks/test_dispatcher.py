"""The dispatcher's durability: dead letters and replays, a receiver that is down while the gateway
is killed, and what a failure logs (DESIGN §7)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apiclient import ApiClient, Tenant
from tests.conftest import ADMIN_KEY
from tests.receiver import Receiver, free_port, verify_wagate
from tests.serve import Server
from tests.webhooks.test_signed import FAST, all_events, deliveries
from wagate.gateway import delivery_policy
from wagate.webhooks.dispatcher import Dispatcher

PHONE = "5511999990002"


async def wait_deliveries(
    api: ApiClient, tenant: Tenant, done: Any, timeout: float = 20.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await deliveries(api, tenant, limit=500)
        if done(rows):
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.05)


async def cli(database_url: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wagate",
        "webhooks",
        *args,
        env={**os.environ, "WAGATE_DATABASE_URL": database_url, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_dead_after_max_attempts_then_replayed_by_api_and_cli(
    gateway_factory: Any, fresh_database_url: Any, caplog: pytest.LogCaptureFixture
) -> None:
    up = False
    secret: list[str] = []

    def respond(n: int, headers: dict[str, str], body: bytes) -> int:
        if not up:
            return 503
        return 200 if verify_wagate(secret[0], headers, body, time.time()) else 401

    receiver = Receiver(respond)
    await receiver.start()
    url = await fresh_database_url("sqlite")
    caplog.set_level(logging.WARNING, logger="wagate.webhooks")
    try:
        api = await gateway_factory(url, webhook_max_attempts=3, **FAST)
        tenant = await api.tenant(webhook_url=receiver.url)
        secret.append(tenant.webhook_secret)
        other = await api.tenant("other")
        account = await api.account(tenant)
        await api.link(tenant, account["id"])
        await api.qr(tenant, account["id"])
        await api.cancel(tenant, account["id"])
        events = await all_events(api, tenant)

        dead = await wait_deliveries(
            api, tenant, lambda rows: len(rows) == len(events) and _all(rows, "dead")
        )
        assert all(d["attempts"] == 3 and d["last_status"] == 503 for d in dead)
        assert all(d["last_error"] == "http_5xx" for d in dead)
        tries: dict[str, int] = {}
        for request in receiver.requests:
            key = request.headers["x-wagate-delivery"]
            tries[key] = tries.get(key, 0) + 1
        assert tries == {str(e["id"]): 3 for e in events}
        _check_failure_logs(caplog, events, tenant)

        up = True
        first = dead[0]["id"]
        r = await api.http.post(f"/v1/webhook-deliveries/{first}/retry", headers=other.auth)
        assert r.status_code == 404, r.text
        r = await api.http.post(f"/v1/webhook-deliveries/{first}/retry", headers=tenant.auth)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "pending" and r.json()["attempts"] == 0
        await receiver.wait_for(lambda rc: len(rc.delivered) == 1)
        assert receiver.delivered[0].json() == events[0]
        r = await api.http.post(f"/v1/webhook-deliveries/{first}/retry", headers=tenant.auth)
        assert r.status_code == 409, r.text

        code, out = await cli(url, "retry", "--all-dead", "--json")
        assert code == 0 and json.loads(out) == {"retried": len(events) - 1}, out
        # The gateway is another process to the CLI: its dispatcher finds them on its poll.
        await receiver.wait_for(lambda rc: len(rc.delivered) == len(events))
        assert [q.json() for q in receiver.delivered] == events
        code, out = await cli(url, "list", "--status", "delivered", "--json")
        listed = json.loads(out)
        assert code == 0 and [d["event_id"] for d in listed] == [e["id"] for e in events]
        assert all(d["attempts"] == 1 for d in listed)
        code, table = await cli(url, "list")
        assert code == 0 and table.count("delivered") == len(events), table
    finally:
        await receiver.stop()


def _all(rows: list[dict[str, Any]], status: str) -> bool:
    return bool(rows) and all(d["status"] == status for d in rows)


def _check_failure_logs(
    caplog: pytest.LogCaptureFixture, events: list[dict[str, Any]], tenant: Tenant
) -> None:
    failed = [r for r in caplog.records if r.getMessage() == "webhook delivery failed"]
    assert len(failed) == 3 * len(events)
    assert {r.name for r in failed} == {"wagate.webhooks"}
    assert {(r.status, r.error) for r in failed} == {(503, "http_5xx")}  # type: ignore[attr-defined]
    assert {r.event_id for r in failed} == {e["id"] for e in events}  # type: ignore[attr-defined]
    text = " ".join(str(v) for r in failed for v in vars(r).values())
    assert tenant.webhook_secret not in text and "v1=" not in text and "created_at" not in text


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.stop()


@pytest.fixture
async def http_clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []
    yield made
    for client in made:
        await client.aclose()


async def test_receiver_down_gateway_sigkilled_nothing_lost(
    fresh_database_url: Any,
    servers: list[Server],
    http_clients: list[httpx.AsyncClient],
    tmp_path: Path,
) -> None:
    env = {
        "WAGATE_WEBHOOK_RETRY_MIN_SECONDS": "0.05",
        "WAGATE_WEBHOOK_RETRY_MAX_SECONDS": "0.2",
        "WAGATE_WEBHOOK_MAX_ATTEMPTS": "1000",
    }
    server = Server(await fresh_database_url("sqlite"), tmp_path / "data", env=env)
    servers.append(server)
    receiver = Receiver(port=free_port())  # not listening yet: the backend is down
    server.start()
    http = httpx.AsyncClient(base_url=server.url, timeout=10.0)
    http_clients.append(http)
    api = ApiClient(http, None, ADMIN_KEY)
    tenant = await api.tenant(webhook_url=receiver.url)
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    await wait_deliveries(api, tenant, lambda rows: rows and rows[0]["attempts"] >= 3, timeout=10.0)
    [head, *rest] = await deliveries(api, tenant)
    assert head["last_error"] == "refused" and head["status"] == "pending"
    assert all(d["status"] == "pending" for d in rest)

    server.kill()
    server.start()
    await receiver.start()
    try:
        await api.wait_status(tenant, account["id"], "connected")
        rows = await wait_deliveries(api, tenant, lambda rows: _all(rows, "delivered"))
        events = await all_events(api, tenant)
        assert [d["event_id"] for d in rows] == [e["id"] for e in events]
        # At least once: a duplicate would carry a delivery id already seen; none is lost.
        unique: dict[str, Any] = {}
        for request in receiver.delivered:
            unique.setdefault(request.headers["x-wagate-delivery"], request.json())
        assert list(unique.values()) == events
        assert [e["seq"] for e in unique.values()] == list(range(1, len(events) + 1))
        assert {"link.qr", "link.paired", "session.connected"} <= {e["type"] for e in events}
    finally:
        await receiver.stop()


async def restart_dispatcher(
    api: ApiClient, concurrency: int | None = None, **options: Any
) -> None:
    """The gateway's dispatcher with other limits (the request timeout is not a setting)."""
    assert api.app is not None
    gateway = api.app.state.gateway
    await gateway.dispatcher.close()
    policy = delivery_policy(gateway.settings)
    if concurrency is not None:
        policy = dataclasses.replace(policy, concurrency=concurrency)
    gateway.dispatcher = Dispatcher(
        gateway.db, gateway.cipher, policy, gateway.metrics, guard=gateway.guard, **options
    )
    # The gateway closes what it opened: the replacement too (closing twice is harmless).
    gateway._stack.push_async_callback(gateway.dispatcher.close)
    await gateway.dispatcher.start()


async def test_accounts_in_parallel_each_account_one_at_a_time(
    gateway_factory: Any, fresh_database_url: Any
) -> None:
    receiver = Receiver(hold=lambda n: 0.05)
    await receiver.start()
    try:
        api = await gateway_factory(await fresh_database_url("sqlite"), **FAST)
        await restart_dispatcher(api, concurrency=2)
        tenant = await api.tenant(webhook_url=receiver.url)
        accounts = [await api.account(tenant, f"line {n}") for n in range(3)]
        for n, account in enumerate(accounts):
            # Scans again if the 100x-fast code rotated away on a busy machine.
            await api.link_phone(tenant, account["id"], f"55119{n:08d}")
        events = await all_events(api, tenant)
        await receiver.wait_for(lambda r: len(r.delivered) == len(events))

        assert receiver.max_active == 2  # accounts overlap, never more than the bound
        by_account: dict[str, list[Any]] = {}
        for request in sorted(receiver.requests, key=lambda q: q.started):
            by_account.setdefault(request.json()["account_id"], []).append(request)
        assert len(by_account) == 3
        for requests in by_account.values():
            seqs = [q.json()["seq"] for q in requests]
            assert seqs == list(range(1, len(seqs) + 1))
            for earlier, later in zip(requests, requests[1:], strict=False):
                assert later.started >= earlier.ended  # one request at a time per account
    finally:
        await receiver.stop()


async def test_silent_receiver_times_out_and_is_retried(
    gateway_factory: Any, fresh_database_url: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(hold=lambda n: 1.0 if n == 0 else 0.0)
    await receiver.start()
    caplog.set_level(logging.WARNING, logger="wagate.webhooks")
    try:
        api = await gateway_factory(await fresh_database_url("sqlite"), **FAST)
        await restart_dispatcher(api, timeout=0.2)
        tenant = await api.tenant(webhook_url=receiver.url)
        account = await api.account(tenant)
        await api.link(tenant, account["id"])
        events = await all_events(api, tenant)
        n = len(events)  # the attempt goes on showing codes; these are the ones we know of
        rows = await wait_deliveries(
            api, tenant, lambda rows: len(rows) >= n and _all(rows[:n], "delivered")
        )
        assert rows[0]["attempts"] == 2 and all(d["attempts"] == 1 for d in rows[1:n])
        [failed] = [r for r in caplog.records if r.getMessage() == "webhook delivery failed"]
        assert (failed.status, failed.error) == (None, "timeout")  # type: ignore[attr-defined]
        assert failed.event_id == events[0]["id"]  # type: ignore[attr-defined]
    finally:
        await receiver.stop()


async def test_a_claim_whose_lease_is_running_out_is_given_back_not_sent(
    gateway_factory: Any, fresh_database_url: Any
) -> None:
    """A claim held too long (its lease ends before a request could finish) is not sent: it
    gets its attempt back and goes out once, under a fresh claim, before what queued behind."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from wagate.db.models import utcnow
    from wagate.webhooks import queue as rows

    receiver = Receiver()
    await receiver.start()
    try:
        api = await gateway_factory(await fresh_database_url("sqlite"), **FAST)
        assert api.app is not None
        gateway = api.app.state.gateway
        await gateway.dispatcher.close()  # the events below queue: nobody sends them yet
        tenant = await api.tenant(webhook_url=receiver.url)
        account = await api.account(tenant)
        await api.link(tenant, account["id"])
        await api.cancel(tenant, account["id"])
        events = await all_events(api, tenant)

        async def claim_briefly(session: AsyncSession) -> list[rows.Job]:
            ids = await rows.due_prefixes(session, [account["id"]], utcnow(), 1)
            return await rows.claim(session, ids, utcnow(), lease=1.0)

        jobs = await gateway.db.run(claim_briefly)
        assert [job.event["seq"] for job in jobs] == [1]
        await restart_dispatcher(api)
        gateway.dispatcher._claimed.add(jobs[0].delivery_id)
        gateway.dispatcher._give(account["id"], jobs)
        await asyncio.sleep(0.3)
        assert receiver.requests == []  # not sent on a lease of 1 s with a 10 s timeout
        await receiver.wait_for(lambda r: len(r.delivered) == len(events))
        assert [r.json() for r in receiver.requests] == events  # once each, in order
        done = await wait_deliveries(
            api, tenant, lambda d: all(row["status"] == "delivered" for row in d)
        )
        assert {row["attempts"] for row in done} == {1}
    finally:
        await receiver.stop()
