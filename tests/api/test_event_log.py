"""Polling the event log: scoped to the caller, ordered by id, paged by cursor, on every backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tests.apiclient import ApiClient
from wagate.core.event_types import EventType
from wagate.db.models import Event, utcnow
from wagate.db.outbox import record
from wagate.gateway import Gateway

PHONE = "5511999990101"
ENVELOPE = {"id", "type", "created_at", "workspace_id", "account_id", "seq", "data"}


async def poll(api: ApiClient, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await api.http.get("/v1/events", params=params, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def read_all(api: ApiClient, auth: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every event, page by page, following ``next_after``."""
    seen: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await poll(api, auth, after=after, **params)
        if not page["events"]:
            assert page["next_after"] == after
            return seen
        seen.extend(page["events"])
        after = page["next_after"]
        assert after == seen[-1]["id"]


async def test_polling_is_scoped_ordered_and_paged(api: ApiClient) -> None:
    a, b = await api.tenant("a"), await api.tenant("b")
    in_a, in_b = await api.account(a), await api.account(b)
    await api.link(a, in_a["id"])
    qr = await api.qr(a, in_a["id"])
    assert await api.scan(a, qr["code"], PHONE) == "linked"
    await api.wait_status(a, in_a["id"], "connected")
    await api.link(b, in_b["id"])
    await api.cancel(b, in_b["id"])

    mine = await read_all(api, a.auth, limit=2)
    assert mine == (await poll(api, a.auth, limit=1000))["events"]
    assert all(set(e) == ENVELOPE for e in mine)
    assert {e["workspace_id"] for e in mine} == {a.id}
    ids = [e["id"] for e in mine]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
    types = [e["type"] for e in mine]
    for expected in ("link.started", "link.qr", "link.paired", "link.succeeded"):
        assert expected in types
    assert types[-1] == "session.connected"
    shown = [e["data"]["code"] for e in mine if e["type"] == "link.qr"]
    assert shown[0] == qr["code"]

    theirs = await read_all(api, b.auth)
    assert {e["workspace_id"] for e in theirs} == {b.id}
    assert [e["type"] for e in theirs][-2:] == ["link.failed", "account.status"]
    everything = await read_all(api, api.admin, limit=3)
    assert sorted(everything, key=lambda e: e["id"]) == everything
    assert {e["id"] for e in everything} == {e["id"] for e in mine + theirs}

    # After a cursor: only what came later.
    later = await poll(api, a.auth, after=ids[2])
    assert [e["id"] for e in later["events"]] == ids[3:]


async def test_polling_one_account_and_foreign_accounts(api: ApiClient) -> None:
    a, b = await api.tenant("a"), await api.tenant("b")
    first, second = await api.account(a, "first"), await api.account(a, "second")
    foreign = await api.account(b)
    await api.link(a, first["id"])
    await api.link(a, second["id"])
    await api.link(b, foreign["id"])

    only = await read_all(api, a.auth, account_id=second["id"])
    assert only and {e["account_id"] for e in only} == {second["id"]}
    assert only == await read_all(api, api.admin, account_id=second["id"])
    r = await api.http.get("/v1/events", params={"account_id": foreign["id"]}, headers=a.auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    for bad in ({"limit": 1001}, {"limit": 0}, {"after": -1}, {"after": "x"}):
        r = await api.http.get("/v1/events", params=bad, headers=a.auth)
        assert r.status_code == 422, (bad, r.text)
    r = await api.http.get("/v1/events")
    assert r.status_code == 401


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_polling_waits_for_a_lower_id_still_in_flight(
    backend: str, fresh_database_url: Any, gateway_factory: Any
) -> None:
    """Two transactions may commit out of id order: a poller must not pass the lower id."""
    api: ApiClient = await gateway_factory(await fresh_database_url(backend))
    assert api.app is not None
    gateway: Gateway = api.app.state.gateway
    tenant = await api.tenant()
    slow, fast = await api.account(tenant, "slow"), await api.account(tenant, "fast")
    seen = (await poll(api, tenant.auth))["next_after"]

    held = asyncio.Event()
    release = asyncio.Event()

    async def slow_writer() -> int:
        async with gateway.db.sessions() as session, session.begin():
            from wagate.services.accounts import lock_account

            account = await lock_account(session, slow["id"])
            assert account is not None
            event = record(session, account, EventType.ACCOUNT_STATUS, {"probe": True})
            await session.flush()  # the id is allocated now, visible only at commit
            held.set()
            await release.wait()
            return event.id

    writer = asyncio.ensure_future(slow_writer())
    try:
        await held.wait()
        await api.link(tenant, fast["id"])  # commits events with higher ids
        fast_ids = [e["id"] for e in await read_all(api, tenant.auth, account_id=fast["id"])]
        # The one account's own stream is not held back.
        assert fast_ids
        blocked = await poll(api, tenant.auth, after=seen)
        assert blocked["events"] == [] and blocked["next_after"] == seen
    finally:
        release.set()
        slow_id = await writer
    assert slow_id < fast_ids[0]
    page = await poll(api, tenant.auth, after=seen)
    # The attempt's next events (its code) may have committed since: they come after these.
    expected = sorted([slow_id, *fast_ids])
    assert [e["id"] for e in page["events"]][: len(expected)] == expected


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_rolled_back_id_holds_readers_only_until_settled(
    backend: str, fresh_database_url: Any, gateway_factory: Any
) -> None:
    """An id a rolled-back transaction used leaves a gap for ever; readers pass it once the
    events after it are older than the settle time."""
    api: ApiClient = await gateway_factory(await fresh_database_url(backend))
    assert api.app is not None
    gateway: Gateway = api.app.state.gateway
    tenant = await api.tenant()
    account = await api.account(tenant)
    seen = (await poll(api, tenant.auth))["next_after"]

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon):
        async with gateway.db.sessions() as session, session.begin():
            from wagate.services.accounts import lock_account

            locked = await lock_account(session, account["id"])
            assert locked is not None
            record(session, locked, EventType.ACCOUNT_STATUS, {"probe": True})
            await session.flush()
            raise Abandon
    await api.link(tenant, account["id"])
    assert (await poll(api, tenant.auth, after=seen))["events"] == []
    async with gateway.db.sessions() as session, session.begin():
        await session.execute(
            update(Event).where(Event.id > seen).values(created_at=utcnow() - timedelta(minutes=1))
        )
    page = await poll(api, tenant.auth, after=seen)
    assert [e["type"] for e in page["events"]][:2] == ["account.status", "link.started"]
    assert page["events"][0]["id"] > seen + 1  # past the gap
