"""Messages through the HTTP API and the simulator: send, receipts, idempotency, incoming."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from tests.apiclient import ApiClient, Tenant
from wagate.core.caller import Caller
from wagate.engines.base import MessageReceived
from wagate.sessions import sending
from wagate.sessions.manager import SessionManager

PHONE = "5511999990101"
FRIEND = "5511988887777"


async def _send(api: ApiClient, tenant: Tenant, account_id: str, **body: Any) -> Any:
    return await api.http.post(
        f"/v1/accounts/{account_id}/messages", json=body, headers=tenant.auth
    )


async def _wait_message(
    api: ApiClient, tenant: Tenant, account_id: str, message_id: str, status: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        r = await api.http.get(
            f"/v1/accounts/{account_id}/messages/{message_id}", headers=tenant.auth
        )
        assert r.status_code == 200, r.text
        if r.json()["status"] == status:
            return r.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"message stayed {r.json()['status']}"
        await asyncio.sleep(0.01)


async def _events(api: ApiClient, tenant: Tenant, account_id: str, type_: str) -> list[Any]:
    r = await api.http.get(
        "/v1/events", params={"account_id": account_id, "limit": 1000}, headers=tenant.auth
    )
    assert r.status_code == 200, r.text
    return [e for e in r.json()["events"] if e["type"] == type_]


async def test_message_sent_delivered_read(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)

    r = await _send(api, tenant, account["id"], to=FRIEND, text="hello")
    assert r.status_code == 202, r.text
    sent = r.json()
    assert sent["status"] == "queued" and sent["direction"] == "out" and sent["wa_id"]

    read = await _wait_message(api, tenant, account["id"], sent["id"], "read")
    assert read["chat"] == FRIEND and read["text"] == "hello"
    stamps = [read[k] for k in ("created_at", "sent_at", "delivered_at", "read_at")]
    assert all(stamps) and stamps == sorted(stamps), read
    statuses = await _events(api, tenant, account["id"], "message.status")
    assert [e["data"]["status"] for e in statuses] == ["sent", "delivered", "read"]
    assert {e["data"]["message_id"] for e in statuses} == {sent["id"]}
    seqs = [e["seq"] for e in statuses]
    assert seqs == sorted(seqs)


async def test_repeated_client_ref_returns_the_same_message(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)

    first = await _send(api, tenant, account["id"], to=FRIEND, text="one", client_ref="order-1")
    assert first.status_code == 202, first.text
    # Concurrent repeats, and one with another text: all answer the first message.
    repeats = await asyncio.gather(
        *(
            _send(api, tenant, account["id"], to=FRIEND, text=t, client_ref="order-1")
            for t in ("one", "one", "two")
        )
    )
    for r in repeats:
        assert r.status_code == 202, r.text
        assert r.json()["id"] == first.json()["id"] and r.json()["text"] == "one"
    await _wait_message(api, tenant, account["id"], first.json()["id"], "read")
    statuses = await _events(api, tenant, account["id"], "message.status")
    # Sent once: one message's receipts, once each.
    assert [e["data"]["status"] for e in statuses] == ["sent", "delivered", "read"]

    # Concurrent first sends of a new ref still make one message.
    racing = await asyncio.gather(
        *(_send(api, tenant, account["id"], to=FRIEND, text="x", client_ref="r2") for _ in range(4))
    )
    assert len({r.json()["id"] for r in racing}) == 1
    other = await _send(api, tenant, account["id"], to=FRIEND, text="x", client_ref="r3")
    assert other.json()["id"] != racing[0].json()["id"]


async def test_send_on_unlinked_account_is_409(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    r = await _send(api, tenant, account["id"], to=FRIEND, text="hi", client_ref="c1")
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "conflict"
    # Nothing was stored under the ref: once connected, the same ref sends for real.
    await api.link_phone(tenant, account["id"], PHONE)
    r = await _send(api, tenant, account["id"], to=FRIEND, text="hi", client_ref="c1")
    assert r.status_code == 202, r.text


async def test_incoming_message_stored_and_emitted(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)

    r = await api.http.post(
        "/v1/sim/messages",
        json={"from": FRIEND, "to": PHONE, "text": "olá, tudo bem?"},
        headers=tenant.auth,
    )
    assert r.status_code == 200 and r.json() == {"devices": 1}, r.text
    deadline = time.monotonic() + 10
    while not (received := await _events(api, tenant, account["id"], "message.received")):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    [event] = received
    assert event["data"]["text"] == "olá, tudo bem?"
    assert event["data"]["from"].startswith(FRIEND)
    r = await api.http.get(
        f"/v1/accounts/{account['id']}/messages/{event['data']['message_id']}",
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    message = r.json()
    assert message["direction"] == "in" and message["status"] == "received"
    assert message["text"] == "olá, tudo bem?"


async def test_a_burst_of_incoming_messages_arrives_in_order(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    for count in (0, 1001):
        r = await api.http.post(
            "/v1/sim/messages",
            json={"from": FRIEND, "to": PHONE, "text": "x", "count": count},
            headers=tenant.auth,
        )
        assert r.status_code == 422, r.text

    r = await api.http.post(
        "/v1/sim/messages",
        json={"from": FRIEND, "to": PHONE, "text": "burst", "count": 25},
        headers=tenant.auth,
    )
    assert r.status_code == 200 and r.json() == {"devices": 1}, r.text
    deadline = time.monotonic() + 10
    while len(received := await _events(api, tenant, account["id"], "message.received")) < 25:
        assert time.monotonic() < deadline, len(received)
        await asyncio.sleep(0.02)
    assert len(received) == 25 and {e["data"]["text"] for e in received} == {"burst"}
    assert len({e["data"]["wa_id"] for e in received}) == 25
    seqs = [e["seq"] for e in received]
    assert seqs == list(range(seqs[0], seqs[0] + 25))  # in order, gap-free
    # The burst arrived at once, so it was committed in one transaction (one clock reading).
    assert len({e["created_at"] for e in received}) == 1


async def test_a_message_the_engine_reports_twice_is_stored_once(api: ApiClient) -> None:
    """Engines may deliver a message again (a reconnect, a history sync): within one batch, in
    a later batch, or one at a time, it is stored and emitted once."""
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    assert api.app is not None
    manager: SessionManager = api.app.state.gateway.sessions
    chat = f"{FRIEND}@s.whatsapp.net"

    def message(wa_id: str) -> MessageReceived:
        return MessageReceived(wa_id, chat, chat, wa_id, datetime.now(UTC))

    for wa_id in ("A1", "A2", "A1", "A3", "A2"):  # queued together: applied as one batch
        manager._on_engine_event(account["id"], message(wa_id))
    await manager.settle()
    manager._on_engine_event(account["id"], message("A3"))  # a later batch
    manager._on_engine_event(account["id"], message("A4"))
    await manager.settle()
    await manager.apply(account["id"], message("A4"))  # alone, through the single-event path
    received = await _events(api, tenant, account["id"], "message.received")
    assert [e["data"]["wa_id"] for e in received] == ["A1", "A2", "A3", "A4"]


async def test_message_bad_input_and_scoping(gateway_factory, fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"))
    tenant, other = await api.tenant("mine"), await api.tenant("other")
    account, second = await api.account(tenant), await api.account(tenant, "second")
    await api.link_phone(tenant, account["id"], PHONE)
    for body in (
        {"to": FRIEND, "text": ""},
        {"to": FRIEND, "text": "x" * 4097},
        {"to": "0123456789", "text": "x"},
        {"to": "+5511999", "text": "x"},
        {"to": FRIEND},
        {"to": FRIEND, "text": "x", "client_ref": ""},
        {"to": FRIEND, "text": "x", "client_ref": "r" * 101},
        {"to": FRIEND, "text": "x", "extra": 1},
    ):
        r = await _send(api, tenant, account["id"], **body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    r = await _send(api, tenant, account["id"], to=FRIEND, text="x" * 4096)
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    for who, path in (
        (other, f"/v1/accounts/{account['id']}/messages/{message_id}"),
        (tenant, f"/v1/accounts/{second['id']}/messages/{message_id}"),
        (tenant, f"/v1/accounts/{account['id']}/messages/no-such-message"),
    ):
        r = await api.http.get(path, headers=who.auth)
        assert r.status_code == 404, r.text
    r = await _send(api, other, account["id"], to=FRIEND, text="x")
    assert r.status_code == 404, r.text


async def test_client_ref_race_between_two_processes(api: ApiClient) -> None:
    """Another process's SessionManager (its own locks, the same database) takes the same
    client_ref at the same moment: the database's unique key decides, and every caller gets the
    one message."""
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    assert api.app is not None
    gateway = api.app.state.gateway
    elsewhere = SessionManager(gateway.db, gateway.engine)
    caller = Caller(key_id=None, workspace_id=tenant.id)
    for round_ in range(3):
        ref = f"race-{round_}"
        over_http = [
            _send(api, tenant, account["id"], to=FRIEND, text="x", client_ref=ref) for _ in range(2)
        ]
        direct = [
            sending.send(elsewhere, caller, account["id"], FRIEND, "x", client_ref=ref)
            for _ in range(2)
        ]
        answers = await asyncio.gather(*over_http, *direct)
        assert [r.status_code for r in answers[:2]] == [202, 202], [r.text for r in answers[:2]]
        ids = {r.json()["id"] for r in answers[:2]} | {m.id for m in answers[2:]}
        assert len(ids) == 1, ids


async def test_messages_a_stopped_process_left_queued_are_settled(  # type: ignore[no-untyped-def]
    gateway_factory, database_url
) -> None:
    """What a crash leaves behind: a message the engine took (it has a WhatsApp id) but whose
    receipts never came is ``sent``; one without an id may or may not have gone out and is
    ``failed`` with ``send_interrupted`` (never sent twice); a send in progress is left alone."""
    from datetime import timedelta

    from wagate.db.models import Message, utcnow
    from wagate.sessions import sweeper

    api = await gateway_factory(database_url)
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], PHONE)
    gateway = api.app.state.gateway
    long_ago = utcnow() - timedelta(seconds=sweeper.STALE_QUEUED + 5)

    async def leftovers(session):  # type: ignore[no-untyped-def]
        rows = {
            "taken": Message(account_id=account["id"], direction="out", chat=PHONE, text="a",
                             status="queued", wa_id="3EB0TAKEN", updated_at=long_ago),
            "unknown": Message(account_id=account["id"], direction="out", chat=PHONE, text="b",
                               status="queued", updated_at=long_ago),
            "fresh": Message(account_id=account["id"], direction="out", chat=PHONE, text="c",
                             status="queued"),
        }  # fmt: skip
        session.add_all(rows.values())
        await session.flush()
        return {name: row.id for name, row in rows.items()}

    ids = await gateway.db.run(leftovers)
    assert await sweeper.settle_messages(gateway.sessions) == 2
    assert await sweeper.settle_messages(gateway.sessions) == 0  # once

    async def status(message_id: str) -> dict[str, object]:
        r = await api.http.get(
            f"/v1/accounts/{account['id']}/messages/{message_id}", headers=tenant.auth
        )
        return r.json()  # type: ignore[no-any-return]

    assert (await status(ids["taken"]))["status"] == "sent"
    assert (await status(ids["unknown"]))["status"] == "failed"
    assert (await status(ids["fresh"]))["status"] == "queued"
    r = await api.http.get(
        "/v1/events", params={"account_id": account["id"], "limit": 500}, headers=tenant.auth
    )
    told = {
        e["data"]["message_id"]: (e["data"]["status"], e["data"].get("reason"))
        for e in r.json()["events"]
        if e["type"] == "message.status"
    }
    assert told == {ids["taken"]: ("sent", None), ids["unknown"]: ("failed", "send_interrupted")}
