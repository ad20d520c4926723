"""One account's events as Server-Sent Events, over a real HTTP server in this process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apiclient import ApiClient, Tenant
from tests.conftest import ADMIN_KEY
from tests.serve import free_port
from wagate.api import event_log as events_api
from wagate.api.app import create_app
from wagate.api.server import GatewayServer, server
from wagate.config import Settings
from wagate.core.tasks import BackgroundTasks
from wagate.gateway import Gateway

PHONE = "5511999990201"


@dataclass
class Live:
    api: ApiClient
    url: str
    gateway: Gateway
    server: GatewayServer
    task: asyncio.Task[None]

    async def stop(self) -> float:
        """Shut the server down the way SIGTERM does; the seconds it took."""
        started = time.monotonic()
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 30)
        return time.monotonic() - started


@pytest.fixture
async def live(tmp_path: Path, database_url: str) -> AsyncIterator[Callable[[], Awaitable[Live]]]:
    """A factory of gateways behind a real uvicorn server on 127.0.0.1 (event streams need a
    server that streams; httpx's ASGI transport buffers whole responses)."""
    tasks = BackgroundTasks("live-servers")
    made: list[tuple[Live, httpx.AsyncClient]] = []

    async def make() -> Live:
        settings = Settings(
            database_url=database_url,
            engine="sim",
            sim_time_scale=0.01,
            data_dir=tmp_path / f"data{len(made)}",
            admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        )
        app = create_app(settings)
        port = free_port()
        # A long graceful timeout: a stream that did not end by itself would hold the stop.
        running = server(app, host="127.0.0.1", port=port, graceful_seconds=20)
        task = tasks.spawn(running.serve(), name=f"uvicorn:{port}")
        while not running.started:
            assert not task.done(), "server did not start"
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        http = httpx.AsyncClient(base_url=url, timeout=10)
        one = Live(ApiClient(http, app, ADMIN_KEY), url, app.state.gateway, running, task)
        made.append((one, http))
        return one

    yield make
    for one, http in made:
        await http.aclose()
        if not one.task.done():
            await one.stop()
    await tasks.close()


@dataclass
class Frame:
    id: int | None
    event: str | None
    data: dict[str, Any] | None
    comment: str | None = None


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """Parse an event stream into frames (comments become frames with ``comment``)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Frame(None, None, None, comment=line[1:].strip())
        elif line == "":
            if "data" in fields:
                yield Frame(int(fields["id"]), fields["event"], json.loads(fields["data"]))
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def collect(
    http: httpx.AsyncClient,
    tenant: Tenant,
    account_id: str,
    until: Callable[[list[Frame]], bool],
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> list[Frame]:
    got: list[Frame] = []
    url = f"/v1/accounts/{account_id}/events"
    async with http.stream(
        "GET", url, headers={**tenant.auth, **(headers or {})}, params=params
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for frame in frames(response):
            if frame.comment is None:
                got.append(frame)
            if until(got):
                break
    return got


def types(got: list[Frame]) -> list[str | None]:
    return [f.event for f in got]


async def polled(api: ApiClient, tenant: Tenant, account_id: str) -> list[dict[str, Any]]:
    r = await api.http.get(
        "/v1/events", params={"account_id": account_id, "limit": 1000}, headers=tenant.auth
    )
    return r.json()["events"]  # type: ignore[no-any-return]


async def test_stream_shows_a_whole_link_as_it_happens(live: Callable[[], Awaitable[Live]]) -> None:
    one = await live()
    api = one.api
    tenant = await api.tenant()
    account = await api.account(tenant)
    streaming = asyncio.ensure_future(
        collect(api.http, tenant, account["id"], lambda g: "session.connected" in types(g))
    )
    # Without a cursor the stream starts at the next event: wait until it is open.
    while await metric(api, "wagate_sse_streams") < 1:
        await asyncio.sleep(0.01)
    await api.link(tenant, account["id"])
    qr = await api.qr(tenant, account["id"])
    assert await api.scan(tenant, qr["code"], PHONE) == "linked"
    got = await asyncio.wait_for(streaming, 10)

    assert types(got)[:3] == ["account.status", "link.started", "link.qr"]
    assert got[2].data is not None and got[2].data["data"]["code"] == qr["code"]
    # Every frame is the envelope the polling API returns, id and type included.
    assert [f.data for f in got] == await polled(api, tenant, account["id"])
    assert all(f.data is not None and f.id == f.data["id"] for f in got)
    assert all(f.data is not None and f.event == f.data["type"] for f in got)


async def test_resume_after_last_event_id_misses_nothing(
    live: Callable[[], Awaitable[Live]],
) -> None:
    one = await live()
    api = one.api
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link(tenant, account["id"])
    await api.qr(tenant, account["id"], after_index=1)  # a few QR rotations are in the log
    first = await collect(
        api.http, tenant, account["id"], lambda g: len(g) >= 2, params={"after": 0}
    )
    await api.cancel(tenant, account["id"])
    rest = await collect(
        api.http,
        tenant,
        account["id"],
        lambda g: "link.failed" in types(g) and types(g)[-1] == "account.status",
        headers={"Last-Event-ID": str(first[-1].id)},
    )
    resumed = [f.data for f in first + rest]
    log = await polled(api, tenant, account["id"])
    assert resumed == log
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))

    r = await api.http.get(
        f"/v1/accounts/{account['id']}/events", headers={**tenant.auth, "Last-Event-ID": "nope"}
    )
    assert r.status_code == 422
    other = await api.tenant("other")
    r = await api.http.get(f"/v1/accounts/{account['id']}/events", headers=other.auth)
    assert r.status_code == 404


async def test_keep_alive_comments_on_an_idle_stream(
    live: Callable[[], Awaitable[Live]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_api, "KEEPALIVE_SECONDS", 0.2)
    one = await live()
    tenant = await one.api.tenant()
    account = await one.api.account(tenant)
    comments: list[str] = []
    started = time.monotonic()
    async with one.api.http.stream(
        "GET", f"/v1/accounts/{account['id']}/events", headers=tenant.auth
    ) as response:
        async for frame in frames(response):
            assert frame.comment is not None, "no event happened"
            comments.append(frame.comment)
            if len(comments) == 2:
                break
    assert comments == ["keep-alive", "keep-alive"]
    assert time.monotonic() - started < 3


async def metric(api: ApiClient, name: str) -> float:
    text = (await api.http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_stream_ends_when_the_client_goes(live: Callable[[], Awaitable[Live]]) -> None:
    one = await live()
    tenant = await one.api.tenant()
    account = await one.api.account(tenant)
    for _ in range(3):
        async with one.api.http.stream(
            "GET", f"/v1/accounts/{account['id']}/events", headers=tenant.auth
        ) as response:
            assert response.status_code == 200
            assert await metric(one.api, "wagate_sse_streams") >= 1
    deadline = time.monotonic() + 5
    while await metric(one.api, "wagate_sse_streams") != 0:
        assert time.monotonic() < deadline, "streams stayed open after their clients left"
        await asyncio.sleep(0.05)


async def test_shutdown_does_not_wait_on_open_streams(live: Callable[[], Awaitable[Live]]) -> None:
    one = await live()
    tenant = await one.api.tenant()
    account = await one.api.account(tenant)
    ended: list[bool] = []

    async def listen() -> None:
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=30) as http,
            http.stream(
                "GET", f"/v1/accounts/{account['id']}/events", headers=tenant.auth
            ) as response,
        ):
            async for _ in frames(response):
                pass
        ended.append(True)  # the body ended cleanly, no error

    listeners = [asyncio.ensure_future(listen()) for _ in range(3)]
    deadline = time.monotonic() + 5
    while await metric(one.api, "wagate_sse_streams") < 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    seconds = await one.stop()
    await asyncio.wait_for(asyncio.gather(*listeners), 5)
    assert ended == [True, True, True]
    assert seconds < 2.0, f"shutdown took {seconds:.1f} s with open streams"


async def test_a_stream_shows_what_another_gateway_on_the_database_commits(
    live: Callable[[], Awaitable[Live]],
) -> None:
    """Two gateways share the database; the stream is open on the first. The second links the
    account: only the database carries those events to the first. Once the stream showed the
    code, the first cancels the attempt: events it hands to its stream itself."""
    here, there = await live(), await live()
    tenant = await here.api.tenant()
    account = await here.api.account(tenant)
    got: list[Frame] = []
    cancelled: list[asyncio.Future[dict[str, Any]]] = []

    async def follow() -> None:
        url = f"/v1/accounts/{account['id']}/events"
        async with here.api.http.stream("GET", url, headers=tenant.auth) as response:
            async for frame in frames(response):
                if frame.comment is not None:
                    continue
                got.append(frame)
                if frame.event == "link.qr" and not cancelled:
                    cancelled.append(asyncio.ensure_future(here.api.cancel(tenant, account["id"])))
                if "link.failed" in types(got) and types(got)[-1] == "account.status":
                    return

    streaming = asyncio.ensure_future(follow())
    while await metric(here.api, "wagate_sse_streams") < 1:
        await asyncio.sleep(0.01)
    await there.api.link(tenant, account["id"])
    await asyncio.wait_for(streaming, 10)
    await cancelled[0]

    log = await polled(here.api, tenant, account["id"])
    assert [f.data for f in got] == log
    assert types(got)[:3] == ["account.status", "link.started", "link.qr"]
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))


@pytest.mark.parametrize("resume", ["none", "after", "last-event-id"])
async def test_a_stream_is_handed_what_this_gateway_commits_without_reading_again(
    live: Callable[[], Awaitable[Live]], monkeypatch: pytest.MonkeyPatch, resume: str
) -> None:
    """Opened at the account's newest event (no cursor, ``?after=`` or ``Last-Event-ID``), a
    stream reads the database once, at its start; what this gateway commits next is handed to
    it as it commits."""
    one = await live()
    api = one.api
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link(tenant, account["id"])
    await api.cancel(tenant, account["id"])  # the account is quiet again: nothing more comes
    newest = (await polled(api, tenant, account["id"]))[-1]["id"]
    reads: list[str] = []
    read = events_api.event_log.account_events

    async def counted(session, account_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(account_id)
        return await read(session, account_id, *args, **kwargs)

    monkeypatch.setattr(events_api.event_log, "account_events", counted)
    cursor = {
        "none": ({}, {}),
        "after": ({}, {"after": newest}),
        "last-event-id": ({"Last-Event-ID": str(newest)}, {}),
    }[resume]
    streaming = asyncio.ensure_future(
        collect(
            api.http,
            tenant,
            account["id"],
            lambda g: "link.failed" in types(g) and types(g)[-1] == "account.status",
            headers=cursor[0],
            params=cursor[1],
        )
    )
    while not reads:  # the stream's first read: it is open
        await asyncio.sleep(0.01)
    await api.link(tenant, account["id"])
    await api.qr(tenant, account["id"])
    await api.cancel(tenant, account["id"])
    got = await asyncio.wait_for(streaming, 10)

    log = await polled(api, tenant, account["id"])
    assert [f.data for f in got] == [e for e in log if e["id"] > newest]
    assert reads == [account["id"]]
