"""Several real ``wagate serve`` processes on one database (DESIGN §13): each account served by
exactly one node, failover after SIGKILL, handoff on SIGTERM, commands through any node, and a
paused node fenced out by its epoch.

Leases last 3 s here (renewed every second; a silent node's leases are taken after 4 s), so each
scenario takes seconds, not the production default's 20.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.apiclient import ApiClient, Tenant
from tests.conftest import ADMIN_KEY
from tests.proxy import Proxy
from tests.receiver import Receiver
from tests.serve import Server, SimServerProcess
from tests.test_metrics import one, scrape

LEASE = 3.0
# Slow enough that a QR code shown by the simulator stays valid through a failover.
# Every node of a cluster shares the secret key that seals credentials and webhook secrets.
CLUSTER_ENV = {
    "WAGATE_LEASE_SECONDS": str(LEASE),
    "WAGATE_SIM_TIME_SCALE": "0.2",
    "WAGATE_SECRET_KEY": "cluster-test-secret-key-0123456789",
}
BACKENDS = ["sqlite", "postgres", "mysql"]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.stop()


class Cluster:
    """Gateway nodes on one fresh database, each with an API client; ``env`` is every node's."""

    def __init__(self, url: str, tmp_path: Path, servers: list[Server]) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.servers = servers
        self.clients: list[httpx.AsyncClient] = []
        self.env: dict[str, str] = {}

    def add(self, name: str) -> tuple[Server, ApiClient]:
        env = {**CLUSTER_ENV, **self.env, "WAGATE_NODE_NAME": name}
        server = Server(self.url, self.tmp_path / name, env=env)
        self.servers.append(server)
        server.start()
        http = httpx.AsyncClient(base_url=server.url, timeout=10.0)
        self.clients.append(http)
        return server, ApiClient(http, None, ADMIN_KEY)


@pytest.fixture
async def cluster(
    fresh_database_url: Any, tmp_path: Path, servers: list[Server]
) -> AsyncIterator[Callable[[str], Awaitable[Cluster]]]:
    """A factory: ``await cluster(backend)`` → a ``Cluster`` on a fresh database."""
    made: list[Cluster] = []

    async def make(backend: str) -> Cluster:
        made.append(Cluster(await fresh_database_url(backend), tmp_path, servers))
        return made[-1]

    yield make
    for c in made:
        for http in c.clients:
            await http.aclose()


Shared = Callable[..., Awaitable[tuple[Cluster, SimServerProcess]]]


@pytest.fixture
async def shared_cluster(cluster: Any, tmp_path: Path) -> AsyncIterator[Shared]:
    """A factory: ``await shared_cluster(backend, **env)`` → a ``Cluster`` whose nodes share one
    ``wagate sim-server`` (``WAGATE_SIM_URL``), and that sim-server."""
    sims: list[SimServerProcess] = []

    async def make(backend: str, **env: str) -> tuple[Cluster, SimServerProcess]:
        sim = SimServerProcess(tmp_path / f"sim{len(sims)}", time_scale=0.2)
        sims.append(sim)
        await asyncio.to_thread(sim.start)
        c = await cluster(backend)
        c.env = {"WAGATE_SIM_URL": sim.url, **env}
        return c, sim

    yield make
    for sim in sims:
        sim.stop()


def phone(n: int) -> str:
    return f"55118{n:08d}"


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Wait until ``check`` holds; the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def nodes_of(api: ApiClient) -> dict[str, dict[str, Any]]:
    r = await api.http.get("/v1/cluster", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200, r.text
    return {n["name"]: n for n in r.json()["nodes"]}


async def account_events(api: ApiClient, tenant: Tenant, account_id: str) -> list[dict[str, Any]]:
    r = await api.http.get(
        "/v1/events", params={"account_id": account_id, "limit": 500}, headers=tenant.auth
    )
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


async def linked_through(api: ApiClient, tenant: Tenant, count: int) -> list[dict[str, Any]]:
    """``count`` accounts linked (phones 0, 1, ...) through this node."""
    accounts = [await api.account(tenant, f"line {n}") for n in range(count)]
    for n, account in enumerate(accounts):
        await api.link_phone(tenant, account["id"], phone(n))
    return accounts


async def all_served_by(
    api: ApiClient, tenant: Tenant, accounts: list[dict[str, Any]], node: str
) -> bool:
    """Whether every one of ``accounts`` is connected and served by ``node``."""
    seen = [await api.get_account(tenant, account["id"]) for account in accounts]
    return all(s["status"] == "connected" and s["node"] == node for s in seen)


async def reconnect_reasons(api: ApiClient, tenant: Tenant, account_id: str) -> list[str]:
    """Why the account went ``reconnecting``, each time it did, oldest first."""
    return [
        e["data"]["reason"]
        for e in await account_events(api, tenant, account_id)
        if e["type"] == "account.status" and e["data"]["status"] == "reconnecting"
    ]


async def incoming(api: ApiClient, tenant: Tenant | None, sender: str, to: str) -> int:
    """A simulated phone writes to ``to`` through this node's simulator: how many devices got
    it (those the node runs). With no tenant, asked with the admin key, which needs no
    database read (the node may be cut off from it)."""
    body = {"from": sender, "to": to, "text": "hello"}
    headers = tenant.auth if tenant is not None else api.admin
    r = await api.http.post("/v1/sim/messages", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["devices"])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_each_account_is_served_by_the_node_that_linked_it(
    backend: str, cluster: Any
) -> None:
    c = await cluster(backend)
    (_, a), (_, b) = c.add("a"), c.add("b")
    tenant = await a.tenant()
    owners = {}
    for n in range(6):
        via, name = (a, "a") if n % 2 == 0 else (b, "b")
        account = await via.account(tenant, f"line {n}")
        owners[account["id"]] = (name, n)
        assert (await via.link_phone(tenant, account["id"], phone(n)))["node"] == name
    # Every read through either node agrees on who serves each account.
    for account_id, (name, _) in owners.items():
        assert (await a.get_account(tenant, account_id))["node"] == name
        assert (await b.get_account(tenant, account_id))["node"] == name
    for api in (a, b):
        nodes = await nodes_of(api)
        assert {name: (n["state"], n["sessions_owned"]) for name, n in nodes.items()} == {
            "a": ("live", 3),
            "b": ("live", 3),
        }
    # The operator's view from the command line says the same.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wagate",
        "cluster",
        "status",
        "--json",
        env={**os.environ, "WAGATE_DATABASE_URL": c.url},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    printed = {n["name"]: (n["state"], n["sessions_owned"]) for n in json.loads(out)["nodes"]}
    assert printed == {"a": ("live", 3), "b": ("live", 3)}
    # Each device has one live session in the whole cluster: a message reaches the simulator of
    # the node serving the account, and no other.
    for name, n in owners.values():
        owner, other = (a, b) if name == "a" else (b, a)
        assert await incoming(owner, tenant, "5511977770000", phone(n)) == 1
        assert await incoming(other, tenant, "5511977770000", phone(n)) == 0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_starting_node_leaves_a_live_nodes_attempt_open(backend: str, cluster: Any) -> None:
    """The failure of the system wagate replaces: a second process closed the first one's link
    attempts at its start, while the first kept showing their QR codes."""
    c = await cluster(backend)
    _, a = c.add("a")
    tenant = await a.tenant()
    account = await a.account(tenant)
    await a.link(tenant, account["id"])
    code = await a.qr(tenant, account["id"])
    _, b = c.add("b")
    [attempt] = await b.attempts(tenant, account["id"])
    assert attempt["outcome"] is None and attempt["ended_at"] is None
    # The code is readable through either node; the phone scans what it was shown.
    through_b = await b.qr(tenant, account["id"])
    assert (through_b["attempt_id"], through_b["code"]) == (code["attempt_id"], code["code"])
    assert await a.scan(tenant, through_b["code"], phone(1)) == "linked"
    connected = await b.wait_status(tenant, account["id"], "connected")
    assert connected["node"] == "a"
    [attempt] = await b.attempts(tenant, account["id"])
    assert attempt["outcome"] == "linked"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigkill_fails_over_without_a_new_link(backend: str, cluster: Any) -> None:
    c = await cluster(backend)
    server_a, a = c.add("a")
    _, b = c.add("b")
    tenant = await a.tenant()
    served = await linked_through(a, tenant, 4)
    pending = await a.account(tenant, "pending")
    await a.link(tenant, pending["id"])
    await a.qr(tenant, pending["id"])

    server_a.kill()

    async def all_back() -> bool:
        return await all_served_by(b, tenant, served, "b")

    seconds = await until(all_back, 4 * LEASE + 10, "a's sessions connected again on b")
    assert seconds < 4 * LEASE + 10
    # b may have taken its share by handoff before the kill, once it had run a whole lease: the
    # others were a's when it died.
    on_a = set()
    for n, account in enumerate(served):
        [attempt] = await b.attempts(tenant, account["id"])  # no new attempt, no QR code
        assert attempt["outcome"] == "linked"
        reasons = await reconnect_reasons(b, tenant, account["id"])
        assert reasons[-1] in ("failover", "handoff") and reasons.count("failover") <= 1
        if reasons[-1] == "failover":
            on_a.add(account["id"])
        assert await incoming(b, tenant, "5511977770000", phone(n)) == 1
    assert len(on_a) >= len(served) // 2  # a kept its fair share at least

    async def interrupted() -> bool:
        [attempt] = await b.attempts(tenant, pending["id"])
        return (attempt["outcome"], attempt["reason"]) == ("interrupted", "node_lost")

    # Its lease was taken a moment later than the others': it expires a moment later too.
    await until(interrupted, 4 * LEASE + 10, "a's open attempt ended interrupted")
    assert (await b.get_account(tenant, pending["id"]))["status"] == "unlinked"
    nodes = await nodes_of(b)
    assert nodes["a"]["state"] == "dead" and nodes["a"]["sessions_owned"] == 0
    assert nodes["b"]["sessions_owned"] == len(served)  # the unlinked one holds no lease
    metrics = await scrape(b)
    assert metrics[one("wagate_lease_takeovers_total", reason="failover")] == len(on_a)
    assert metrics[one("wagate_node_sessions", node="b")] == len(served)
    assert metrics[one("wagate_node_sessions", node="a")] == 0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigterm_hands_sessions_over_at_once(backend: str, cluster: Any) -> None:
    c = await cluster(backend)
    server_a, a = c.add("a")
    _, b = c.add("b")
    tenant = await a.tenant()
    served = await linked_through(a, tenant, 3)

    server_a.terminate()

    async def all_back() -> bool:
        return await all_served_by(b, tenant, served, "b")

    # Released at once on leaving: taken on b's next scan, long before the lease would expire.
    seconds = await until(all_back, LEASE, "a's sessions handed to b")
    assert seconds < LEASE
    for account in served:
        reasons = await reconnect_reasons(b, tenant, account["id"])
        assert reasons == ["handoff"]
    assert (await nodes_of(b))["a"]["state"] == "dead"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_stop_through_another_node_closes_the_owners_session(
    backend: str, cluster: Any
) -> None:
    c = await cluster(backend)
    (_, a), (_, b) = c.add("a"), c.add("b")
    tenant = await a.tenant()
    account = await a.account(tenant)
    await a.link_phone(tenant, account["id"], phone(7))
    assert await incoming(a, tenant, "5511977770000", phone(7)) == 1

    r = await b.http.post(f"/v1/accounts/{account['id']}/stop", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["status"] == "stopped" and r.json()["node"] is None
    # Carried to the owner, which closed its session before it answered.
    assert await incoming(a, tenant, "5511977770000", phone(7)) == 0
    assert (await nodes_of(b))["a"]["sessions_owned"] == 0
    # Started again through b: b serves it now.
    r = await b.http.post(f"/v1/accounts/{account['id']}/start", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["node"] == "b"
    await b.wait_status(tenant, account["id"], "connected")
    assert await incoming(b, tenant, "5511977770000", phone(7)) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_paused_node_is_fenced_out_by_the_epoch(backend: str, cluster: Any) -> None:
    """SIGSTOP past the lease: the other node takes the session; resumed, the paused node
    writes nothing for it and closes its own session."""
    c = await cluster(backend)
    server_a, a = c.add("a")
    _, b = c.add("b")
    tenant = await a.tenant()
    account = await a.account(tenant)
    await a.link_phone(tenant, account["id"], phone(3))
    assert server_a.process is not None

    server_a.pause()
    try:

        async def taken() -> bool:
            seen = await b.get_account(tenant, account["id"])
            return bool(seen["status"] == "connected" and seen["node"] == "b")

        await until(taken, 4 * LEASE + 10, "b took the paused node's session")
    finally:
        server_a.resume()

    async def a_let_go() -> bool:
        return await incoming(a, tenant, "5511977770000", phone(3)) == 0

    await until(a_let_go, 2 * LEASE, "the resumed node closed its session")
    before = await account_events(b, tenant, account["id"])
    await asyncio.sleep(LEASE)
    # Nothing the resumed node did landed: no new event, b still serves the account.
    assert await account_events(b, tenant, account["id"]) == before
    seen = await b.get_account(tenant, account["id"])
    assert (seen["status"], seen["node"]) == ("connected", "b")
    assert await incoming(b, tenant, "5511977770000", phone(3)) == 1
    # The resumed node counted the lease it lost.
    assert (await scrape(a))[one("wagate_lease_lost_total")] == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_send_through_any_node_goes_out_through_the_owner(
    backend: str, cluster: Any
) -> None:
    """Only the owner has the engine session: another node carries the send to it."""
    c = await cluster(backend)
    (_, a), (_, b) = c.add("a"), c.add("b")
    tenant = await a.tenant()
    account = await a.account(tenant)
    await a.link_phone(tenant, account["id"], phone(5))
    path = f"/v1/accounts/{account['id']}/messages"
    sent = []
    for n in range(5):
        body = {"to": "5511966660000", "text": f"hi {n}", "client_ref": f"ref-{n}"}
        r = await b.http.post(path, json=body, headers=tenant.auth)
        assert r.status_code == 202, r.text
        sent.append(r.json())
        # The same client_ref through the owner returns the same message, not a second one.
        again = await a.http.post(path, json=body, headers=tenant.auth)
        assert again.status_code == 202 and again.json()["id"] == r.json()["id"]

    async def all_sent() -> bool:
        for message in sent:
            r = await b.http.get(f"{path}/{message['id']}", headers=tenant.auth)
            if r.json()["status"] not in ("sent", "delivered", "read"):
                return False
        return True

    await until(all_sent, 10, "the owner's engine sent every message")
    # Not connected anywhere: the same 409 through either node.
    r = await b.http.post(f"/v1/accounts/{account['id']}/stop", headers=tenant.auth)
    assert r.status_code == 200
    for api in (a, b):
        r = await api.http.post(
            path, json={"to": "5511966660000", "text": "x"}, headers=tenant.auth
        )
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "conflict"


async def test_a_node_with_another_secret_key_refuses_to_start(
    fresh_database_url: Any, tmp_path: Path, servers: list[Server]
) -> None:
    """It would read every stored credential as corrupt and log its account out."""
    url = await fresh_database_url("sqlite")
    first = Server(url, tmp_path / "a", env={**CLUSTER_ENV, "WAGATE_NODE_NAME": "a"})
    servers.append(first)
    first.start()
    other_key = {**CLUSTER_ENV, "WAGATE_NODE_NAME": "b", "WAGATE_SECRET_KEY": "another-key-0000"}
    second = Server(url, tmp_path / "b", env=other_key)
    servers.append(second)
    with pytest.raises(AssertionError, match="exited early") as refused:
        second.start()
    message = str(refused.value)
    assert "WAGATE_SECRET_KEY differs from node 'a'" in message
    assert "Traceback" not in message
    assert "another-key-0000" not in message


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_node_cut_off_from_the_database_closes_its_sessions_first(
    backend: str, fresh_database_url: Any, tmp_path: Path, servers: list[Server]
) -> None:
    """Its leases cannot be renewed: it closes its sessions before they expire, so the shared
    simulated WhatsApp never sees two connections of one device; the other node takes them; it
    rejoins when it can."""
    url = make_url(await fresh_database_url(backend))
    proxy = Proxy(url.host or "127.0.0.1", url.port or (5432 if backend == "postgres" else 3306))
    await proxy.start()
    sim = SimServerProcess(tmp_path / "sim", time_scale=0.2)
    await asyncio.to_thread(sim.start)
    behind_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    c = Cluster(behind_proxy, tmp_path, servers)
    c.env = {"WAGATE_SIM_URL": sim.url}
    try:
        # Started from a thread: the proxy runs on this test's event loop, which must not stop.
        _, a = await asyncio.to_thread(c.add, "a")
        c.url = url.render_as_string(hide_password=False)
        _, b = await asyncio.to_thread(c.add, "b")
        tenant = await a.tenant()
        accounts = await linked_through(a, tenant, 3)
        assert await all_served_by(b, tenant, accounts, "a")

        await proxy.cut()
        cut_at = time.monotonic()

        async def closed_on_a() -> bool:
            return (await asyncio.to_thread(sim.stats))["connected"] == 0

        closed_after = await until(closed_on_a, 4 * LEASE, "a closed its sessions")

        async def taken() -> bool:
            return await all_served_by(b, tenant, accounts, "b")

        await until(taken, 4 * LEASE + 10, "b took the sessions")
        taken_after = time.monotonic() - cut_at
        # Closed before its leases expired; taken only once they had.
        assert closed_after < LEASE < taken_after
        for n in range(len(accounts)):
            assert await incoming(b, tenant, "5511977770000", phone(n)) == 1

        await proxy.start()

        async def rejoined() -> bool:
            return bool((await nodes_of(b))["a"]["state"] == "live")

        await until(rejoined, 4 * LEASE, "a rejoined")
        assert await all_served_by(b, tenant, accounts, "b")
        stats = await asyncio.to_thread(sim.stats)
        assert stats["connected"] == len(accounts)
        assert stats["peak_connections_per_device"] == 1 and stats["replaced_total"] == 0
    finally:
        await proxy.close()
        sim.stop()
        for http in c.clients:
            await http.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_joining_node_takes_its_share_by_handoff(backend: str, cluster: Any) -> None:
    c = await cluster(backend)
    _, a = c.add("a")
    tenant = await a.tenant()
    served = await linked_through(a, tenant, 8)
    _, b = c.add("b")

    async def shared() -> bool:
        seen = [await b.get_account(tenant, account["id"]) for account in served]
        nodes = {s["node"] for s in seen}
        return nodes == {"a", "b"} and all(s["status"] == "connected" for s in seen)

    # b takes a share once it has run a whole lease (a node that just started takes none).
    await until(shared, 4 * LEASE + 10, "the sessions spread over both nodes")
    for n, account in enumerate(served):
        seen = await b.get_account(tenant, account["id"])
        [attempt] = await b.attempts(tenant, account["id"])  # no new attempt, no QR code
        assert attempt["outcome"] == "linked"
        reasons = await reconnect_reasons(b, tenant, account["id"])
        assert reasons == (["handoff"] if seen["node"] == "b" else [])
        owner, other = (a, b) if seen["node"] == "a" else (b, a)
        assert await incoming(owner, tenant, "5511977770000", phone(n)) == 1
        assert await incoming(other, tenant, "5511977770000", phone(n)) == 0
    counts = {name: n["sessions_owned"] for name, n in (await nodes_of(a)).items()}
    assert counts["a"] + counts["b"] == len(served) and min(counts.values()) > 0


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_poller_following_next_after_misses_no_event_of_concurrent_writers(
    backend: str, cluster: Any
) -> None:
    """Two nodes commit events at once, so ids commit out of order; a consumer that polls
    ``GET /v1/events`` and follows ``next_after`` still sees every event exactly once."""
    c = await cluster(backend)
    (_, a), (_, b) = c.add("a"), c.add("b")
    tenant = await a.tenant()
    on_a, on_b = await a.account(tenant, "on a"), await b.account(tenant, "on b")
    await a.link_phone(tenant, on_a["id"], phone(1))
    await b.link_phone(tenant, on_b["id"], phone(2))
    seen: list[int] = []
    writing = True

    async def poll_until_quiet() -> None:
        # Quiet for longer than the event log holds back reads at a young gap in the ids
        # (wagate.services.event_log.SETTLE): nothing can still be on its way.
        after, quiet = 0, 0
        while writing or quiet < 7:
            r = await a.http.get(
                "/v1/events", params={"after": after, "limit": 200}, headers=tenant.auth
            )
            assert r.status_code == 200, r.text
            page = r.json()
            seen.extend(e["id"] for e in page["events"])
            # Counted once the writers stopped: while they write, a gap left by a rolled-back
            # transaction may hold reads back for a while, and that is not the end.
            quiet = 0 if page["events"] or writing else quiet + 1
            after = page["next_after"]
            await asyncio.sleep(0.02 if page["events"] else 1.0)

    async def write(api: ApiClient, to: str) -> None:
        for _ in range(15):
            body = {"from": "5511955550000", "to": to, "text": "burst", "count": 40}
            r = await api.http.post("/v1/sim/messages", json=body, headers=tenant.auth)
            assert r.status_code == 200 and r.json()["devices"] == 1, r.text
            await asyncio.sleep(0.01)

    poller = asyncio.create_task(poll_until_quiet())
    await asyncio.gather(write(a, phone(1)), write(b, phone(2)))
    await asyncio.sleep(1.0)  # the last bursts are applied
    writing = False
    await poller

    everything: list[int] = []
    after = 0
    while True:
        r = await b.http.get(
            "/v1/events", params={"after": after, "limit": 1000}, headers=tenant.auth
        )
        page = r.json()
        if not page["events"]:
            break
        everything.extend(e["id"] for e in page["events"])
        after = page["next_after"]
    assert len(everything) >= 2 * 15 * 40  # every message became an event
    assert seen == sorted(seen) and len(seen) == len(set(seen))  # in order, once each
    missed = sorted(set(everything) - set(seen))
    assert not missed, (missed[:20], len(missed), max(seen), len(everything))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_cancel_logout_and_delete_through_another_node_reach_the_owner(
    backend: str, cluster: Any
) -> None:
    c = await cluster(backend)
    (_, a), (_, b) = c.add("a"), c.add("b")
    tenant = await a.tenant()
    linking = await a.account(tenant, "linking")
    await a.link(tenant, linking["id"])
    code = await a.qr(tenant, linking["id"])
    r = await b.http.delete(f"/v1/accounts/{linking['id']}/link", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["outcome"] == "cancelled", r.text
    # The owner stopped showing the code at once: a scan of it finds nothing to link.
    assert await a.scan(tenant, code["code"], phone(4)) in ("expired_code", "invalid_code")
    assert (
        await a.http.get(f"/v1/accounts/{linking['id']}/qr", headers=tenant.auth)
    ).status_code == 404

    linked = await a.account(tenant, "linked")
    await a.link_phone(tenant, linked["id"], phone(5))
    r = await b.http.post(f"/v1/accounts/{linked['id']}/logout", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["status"] == "logged_out", r.text
    assert await incoming(a, tenant, "5511977770000", phone(5)) == 0

    gone = await a.account(tenant, "deleted")
    await a.link_phone(tenant, gone["id"], phone(6))
    r = await b.http.delete(f"/v1/accounts/{gone['id']}", headers=tenant.auth)
    assert r.status_code == 204, r.text
    assert await incoming(a, tenant, "5511977770000", phone(6)) == 0
    assert (await b.http.get(f"/v1/accounts/{gone['id']}", headers=tenant.auth)).status_code == 404


# -- several nodes over one simulated WhatsApp (wagate sim-server) -------------------------------


async def accounts_seen(api: ApiClient, tenant: Tenant) -> list[dict[str, Any]]:
    r = await api.http.get("/v1/accounts", headers=tenant.auth)
    assert r.status_code == 200, r.text
    accounts: list[dict[str, Any]] = r.json()
    return accounts


async def settled(apis: list[ApiClient], tenant: Tenant, count: int) -> list[dict[str, Any]]:
    """The accounts once all ``count`` are connected and served, and every node gives the same
    answer (a session the placement is moving to another node has no owner for a moment)."""
    views: list[list[dict[str, Any]]] = []

    async def same() -> bool:
        views[:] = [await accounts_seen(api, tenant) for api in apis]
        served = sum(a["status"] == "connected" and a["node"] is not None for a in views[0])
        return served == count and all(v == views[0] for v in views)

    await until(same, 60, "every account connected and served, the same through every node")
    return views[0]


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_three_nodes_share_300_accounts_over_one_simulated_whatsapp(
    backend: str, shared_cluster: Shared
) -> None:
    """Each account linked through one node, its QR code read through a second and scanned by a
    phone told about it through the third: every device is served by exactly one node."""
    count = 300
    c, sim = await shared_cluster(backend, WAGATE_LINK_RATE_PER_WORKSPACE="off")
    apis = [c.add(name)[1] for name in "abc"]
    tenant = await apis[0].tenant()
    pick = random.Random(count)
    gate = asyncio.Semaphore(12)

    async def link(n: int, via: ApiClient, shows: ApiClient, scans: ApiClient) -> None:
        async with gate:
            account = await via.account(tenant, f"line {n}")
            await via.link(tenant, account["id"])
            code = await shows.qr(tenant, account["id"])
            assert await scans.scan(tenant, code["code"], phone(n)) == "linked"

    await asyncio.gather(*(link(n, *pick.sample(apis, 3)) for n in range(count)))
    accounts = await settled(apis, tenant, count)

    owned: dict[str, int] = {}
    for account in accounts:
        owned[account["node"]] = owned.get(account["node"], 0) + 1
    assert set(owned) == {"a", "b", "c"} and max(owned.values()) <= count // 2, owned
    for api in apis:
        nodes = await nodes_of(api)
        assert {name: n["sessions_owned"] for name, n in nodes.items()} == owned
    # One live connection per device in the whole cluster, never two at once.
    assert await asyncio.to_thread(sim.stats) == {
        "devices": count,
        "connected": count,
        "peak_connections_per_device": 1,
        "replaced_total": 0,
    }

    async def reaches_one_device(n: int) -> None:
        async with gate:
            body = {"from": "5511977770000", "to": phone(n), "text": "hello"}
            r = await pick.choice(apis).http.post(
                "/v1/sim/messages", json=body, headers=tenant.auth
            )
            assert r.status_code == 200 and r.json() == {"devices": 1}, r.text

    await asyncio.gather(*(reaches_one_device(n) for n in range(count)))
    for account in pick.sample(accounts, 10):
        [attempt] = await pick.choice(apis).attempts(tenant, account["id"])
        assert attempt["outcome"] == "linked"


async def workspace_events(api: ApiClient, tenant: Tenant) -> list[dict[str, Any]]:
    """Every event of the workspace, oldest first, following ``next_after``."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        r = await api.http.get(
            "/v1/events", params={"after": after, "limit": 1000}, headers=tenant.auth
        )
        assert r.status_code == 200, r.text
        page = r.json()
        if not page["events"]:
            return events
        events += page["events"]
        after = page["next_after"]


def offline_spells(events: list[dict[str, Any]]) -> list[float]:
    """Seconds between the account leaving ``connected`` and being ``connected`` again."""
    spells, left = [], None
    for event in events:
        if event["type"] != "account.status":
            continue
        at = datetime.fromisoformat(event["created_at"])
        if event["data"]["status"] == "connected":
            if left is not None:
                spells.append((at - left).total_seconds())
            left = None
        elif left is None:
            left = at
    return spells


class Traffic:
    """Phones write to every account, and the backend sends to each, through the nodes that are
    up, as a load balancer would spread them; the sim-server says how many devices each
    incoming message reached."""

    def __init__(self, nodes: dict[str, tuple[Server, ApiClient]], tenant: Tenant) -> None:
        self.nodes = nodes
        self.tenant = tenant
        self.up = set(nodes)
        self.delivered = 0  # incoming messages the sim-server handed to a device
        self.sent: list[tuple[str, str]] = []  # (account id, message id) of accepted sends
        self.refused: list[str] = []  # why sends were answered 409
        self.peaks: list[int] = []
        self.flowing = True
        self._pick = random.Random(3)

    def api(self) -> ApiClient:
        return self.nodes[self._pick.choice(sorted(self.up))][1]

    async def run(self, accounts: list[dict[str, Any]], sim: SimServerProcess) -> None:
        auth = self.tenant.auth
        while self.flowing:
            for n, account in enumerate(accounts):
                body = {"from": "5511966660000", "to": phone(n), "text": f"to {n}"}
                r = await self.api().http.post("/v1/sim/messages", json=body, headers=auth)
                assert r.status_code == 200, r.text
                self.delivered += r.json()["devices"]
                body = {"to": "5511966660000", "text": f"from {n}"}
                r = await self.api().http.post(
                    f"/v1/accounts/{account['id']}/messages", json=body, headers=auth
                )
                assert r.status_code in (202, 409), r.text
                if r.status_code == 202:
                    self.sent.append((account["id"], r.json()["id"]))
                else:
                    self.refused.append(r.json()["error"]["message"])
            self.peaks.append((await asyncio.to_thread(sim.stats))["peak_connections_per_device"])
            await asyncio.sleep(0.05)

    async def all_connected_without(self, name: str | None) -> bool:
        seen = await accounts_seen(self.nodes[sorted(self.up)[0]][1], self.tenant)
        return all(a["status"] == "connected" and a["node"] != name for a in seen)

    async def restart(self, name: str) -> None:
        """SIGTERM the node, wait until the others serve its sessions, start it again, and
        wait until it has taken its share back."""
        server, api = self.nodes[name]
        self.up.discard(name)
        await asyncio.to_thread(server.terminate)

        async def handed_over() -> bool:
            return await self.all_connected_without(name)

        async def took_its_share() -> bool:
            owned = (await nodes_of(api))[name]["sessions_owned"]
            return owned > 0 and await self.all_connected_without(None)

        await until(handed_over, 30, f"{name}'s sessions handed over")
        await asyncio.to_thread(server.start)
        self.up.add(name)
        await until(took_its_share, 4 * LEASE + 20, f"{name} took its share again")


async def delivered_in_order(
    receiver: Receiver, api: ApiClient, tenant: Tenant
) -> dict[int, dict[str, Any]]:
    """Every event of the workspace once it has reached the receiver, which got each one and
    nothing else, in ``seq`` order per account without a gap."""
    everything: dict[int, dict[str, Any]] = {}
    first: dict[int, dict[str, Any]] = {}

    async def caught_up() -> bool:
        everything.clear()
        everything.update((e["id"], e) for e in await workspace_events(api, tenant))
        first.clear()
        for request in receiver.delivered:
            first.setdefault(request.json()["id"], request.json())
        return set(first) == set(everything)

    await until(caught_up, 60, "every event delivered to the receiver")
    by_account: dict[str, list[int]] = {}
    for event in first.values():  # in the order they first arrived
        by_account.setdefault(event["account_id"], []).append(event["seq"])
    for seqs in by_account.values():
        assert seqs == list(range(1, len(seqs) + 1))
    return everything


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_rolling_restart_of_three_nodes_while_messages_flow(
    backend: str, shared_cluster: Shared
) -> None:
    """Each node in turn is stopped (SIGTERM) and started again while phones write to every
    account and the backend sends: no account needs a QR code, no event is lost, webhooks keep
    ``seq`` order, and no device is ever connected twice."""
    count = 30
    receiver = Receiver()
    await receiver.start()
    c, sim = await shared_cluster(backend)
    nodes = {name: c.add(name) for name in "abc"}
    apis = [api for _, api in nodes.values()]
    tenant = await apis[0].tenant(webhook_url=receiver.url)
    accounts = [await apis[n % 3].account(tenant, f"line {n}") for n in range(count)]
    for n, account in enumerate(accounts):
        await apis[n % 3].link_phone(tenant, account["id"], phone(n))
    await settled(apis, tenant, count)

    traffic = Traffic(nodes, tenant)
    flowing = asyncio.create_task(traffic.run(accounts, sim))
    try:
        for name in "abc":
            await traffic.restart(name)
    finally:
        traffic.flowing = False
        await flowing

    await settled(apis, tenant, count)
    assert max(traffic.peaks) == 1
    assert (await asyncio.to_thread(sim.stats))["peak_connections_per_device"] == 1
    for account in accounts:
        [attempt] = await apis[0].attempts(tenant, account["id"])  # no new attempt, no QR code
        assert attempt["outcome"] == "linked"
    everything = await delivered_in_order(receiver, apis[0], tenant)
    await receiver.stop()
    received = [e for e in everything.values() if e["type"] == "message.received"]
    assert len(received) == traffic.delivered  # every message a device got is an event
    for account_id, message_id in traffic.sent:  # every accepted send went out
        r = await apis[0].http.get(
            f"/v1/accounts/{account_id}/messages/{message_id}", headers=tenant.auth
        )
        assert r.json()["status"] in ("sent", "delivered", "read"), r.text

    spells: list[float] = []
    for account in accounts:
        spells += offline_spells(
            [e for e in everything.values() if e["account_id"] == account["id"]]
        )
    spells.sort()
    p99 = spells[max(0, int(len(spells) * 0.99) - 1)]
    print(
        f"\n{backend}: {len(spells)} offline spells over {count} accounts, median "
        f"{statistics.median(spells):.2f} s, p99 {p99:.2f} s, max {spells[-1]:.2f} s; "
        f"{traffic.delivered} messages received, {len(traffic.sent)} sends accepted, "
        f"{len(traffic.refused)} refused with 409: {sorted(set(traffic.refused))}"
    )
    assert len(spells) >= count  # each account moved at least once
    assert p99 <= 5.0, spells[-10:]


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_sigkill_of_one_node_of_three_leaves_the_others_attempts_open(
    backend: str, shared_cluster: Shared
) -> None:
    """Its sessions are connected again on the two others, without a QR code; its open attempt
    ends ``interrupted``; the attempts the others run stay open and can still be scanned."""
    c, sim = await shared_cluster(backend)
    nodes = {name: c.add(name) for name in "abc"}
    apis = [api for _, api in nodes.values()]
    a, b, cc = apis
    tenant = await a.tenant()
    served = await linked_through(a, tenant, 6)
    pending = {}
    for name, api in zip("abc", apis, strict=True):
        pending[name] = account = await api.account(tenant, f"pending on {name}")
        await api.link(tenant, account["id"])
        await api.qr(tenant, account["id"])

    nodes["a"][0].kill()

    async def all_back() -> bool:
        seen = [await b.get_account(tenant, x["id"]) for x in served]
        return all(s["status"] == "connected" and s["node"] in ("b", "c") for s in seen)

    await until(all_back, 4 * LEASE + 10, "a's sessions connected again on b and c")

    async def interrupted() -> bool:
        [attempt] = await cc.attempts(tenant, pending["a"]["id"])
        return (attempt["outcome"], attempt["reason"]) == ("interrupted", "node_lost")

    await until(interrupted, 4 * LEASE + 10, "a's open attempt ended interrupted")
    for account in served:
        [attempt] = await b.attempts(tenant, account["id"])  # no new attempt, no QR code
        assert attempt["outcome"] == "linked"
    # b's attempt read and scanned through c, c's through b: each links on the node running it.
    for name, scanner, n in (("b", cc, 20), ("c", b, 21)):
        account = pending[name]
        [attempt] = await scanner.attempts(tenant, account["id"])
        assert attempt["outcome"] is None
        code = await scanner.qr(tenant, account["id"])
        assert await scanner.scan(tenant, code["code"], phone(n)) == "linked"
        assert (await scanner.wait_status(tenant, account["id"], "connected"))["node"] == name
    stats = await asyncio.to_thread(sim.stats)
    assert stats["connected"] == len(served) + 2
    assert stats["peak_connections_per_device"] == 1
    views = [await accounts_seen(api, tenant) for api in (b, cc)]
    assert views[0] == views[1]
