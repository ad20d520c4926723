"""``wagate sim-server``: one simulated WhatsApp for several gateway nodes (DESIGN §13), run as
its own process and reached the way nodes reach it: ``RemoteSimEngine`` over its WebSocket, the
phones through its HTTP controls.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.engines.test_contract import Recorder
from tests.serve import SimServerProcess, free_port
from wagate.core.states import LinkMethod
from wagate.engines.base import (
    Connected,
    CredentialsUpdated,
    Disconnected,
    MessageReceived,
    MessageStatus,
    QrCode,
    Replaced,
)
from wagate.engines.simclient import RemoteSimEngine
from wagate.errors import EngineUnavailable

PHONE = "5511988880001"
WAIT = 10.0


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimServerProcess]:
    process = SimServerProcess(tmp_path, time_scale=0.05)
    process.start()
    yield process
    process.stop()


class Node:
    """A gateway node's engine on the sim-server, with what it reported and what it reopened."""

    def __init__(self, url: str) -> None:
        self.engine = RemoteSimEngine(url)
        self.recorder = Recorder()
        self.reopened: list[str] = []

    async def start(self) -> None:
        await self.engine.start(self.recorder.sink, self._reopen)

    async def _reopen(self, account_id: str) -> str | None:
        self.reopened.append(account_id)
        return None

    async def wait_for(self, account_id: str, kind: type, since: int = 0) -> object:
        def seen() -> bool:
            return any(isinstance(e, kind) for e in self.recorder.of(account_id, since))

        assert await self.recorder.wait(seen, WAIT), f"no {kind.__name__} for {account_id}"
        return next(e for e in self.recorder.of(account_id, since) if isinstance(e, kind))


@pytest.fixture
async def nodes(sim: SimServerProcess) -> AsyncIterator[list[Node]]:
    made = [Node(sim.url), Node(sim.url)]
    for node in made:
        await node.start()
    yield made
    for node in made:
        await node.engine.close()


async def linked(node: Node, sim: SimServerProcess, account_id: str) -> bytes:
    """Link ``account_id`` on ``node`` by QR, scanned through the server's HTTP control; the
    credentials the engine handed over."""
    await node.engine.link(account_id, LinkMethod.QR, None)
    qr = await node.wait_for(account_id, QrCode)
    assert isinstance(qr, QrCode)
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sim.url}/scan", json={"code": qr.code, "phone": PHONE})
    assert r.status_code == 200 and r.json() == {"result": "linked"}, r.text
    blob = await node.wait_for(account_id, CredentialsUpdated)
    await node.wait_for(account_id, Connected)
    assert isinstance(blob, CredentialsUpdated)
    return blob.blob


async def test_the_newer_connection_of_a_device_wins(
    sim: SimServerProcess, nodes: list[Node]
) -> None:
    a, b = nodes
    credentials = await linked(a, sim, "acct-1")
    assert sim.stats() == {
        "devices": 1,
        "connected": 1,
        "peak_connections_per_device": 1,
        "replaced_total": 0,
    }
    # The same device opened from a second node: WhatsApp keeps the newer connection.
    await b.engine.connect("acct-1", credentials)
    await b.wait_for("acct-1", Connected)
    await a.wait_for("acct-1", Replaced)
    assert sim.stats() == {
        "devices": 1,
        "connected": 1,
        "peak_connections_per_device": 2,
        "replaced_total": 1,
    }
    # Only the newer connection receives messages now.
    async with httpx.AsyncClient() as http:
        body = {"from": "5511977770000", "to": PHONE, "text": "hi"}
        r = await http.post(f"{sim.url}/messages", json=body)
    assert r.json() == {"devices": 1}
    await b.wait_for("acct-1", MessageReceived)
    assert not any(isinstance(e, MessageReceived) for e in a.recorder.of("acct-1"))
    # The replaced side holds nothing: a send through it is refused.
    with pytest.raises(EngineUnavailable):
        await a.engine.send_text("acct-1", "5511977770000", "hello")
    assert await b.engine.send_text("acct-1", "5511977770000", "hello")


async def test_a_node_that_goes_away_loses_its_connections(
    sim: SimServerProcess, nodes: list[Node]
) -> None:
    a, b = nodes
    credentials = await linked(a, sim, "acct-2")
    await a.engine.close()  # the node's socket closes, as when its process dies

    async def offline() -> bool:
        return sim.stats()["connected"] == 0

    for _ in range(100):
        if await offline():
            break
        await asyncio.sleep(0.05)
    assert await offline()
    await b.engine.connect("acct-2", credentials)
    await b.wait_for("acct-2", Connected)
    stats = sim.stats()
    assert (stats["connected"], stats["peak_connections_per_device"]) == (1, 1)
    assert stats["replaced_total"] == 0


async def test_a_dropped_socket_reports_sessions_lost_and_reopens_them(
    sim: SimServerProcess, nodes: list[Node]
) -> None:
    a, _ = nodes
    await linked(a, sim, "acct-3")
    await a.engine.link("acct-4", LinkMethod.QR, None)
    await a.wait_for("acct-4", QrCode)
    mark = a.recorder.mark()

    sim.kill()
    lost = await a.wait_for("acct-3", Disconnected, since=mark)
    assert lost == Disconnected("connection_lost", will_retry=True)
    assert not a.engine.healthy()
    with pytest.raises(EngineUnavailable):
        await a.engine.link("acct-5", LinkMethod.QR, None)

    sim.start()  # the same port: the engine dials again, then has the session reopened
    assert await a.recorder.wait(lambda: a.reopened == ["acct-3"], WAIT), a.reopened
    assert a.engine.healthy()
    # The link open at the drop was reported ended, not reopened.
    assert "acct-4" not in a.reopened


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/scan", {}),
        ("/scan", {"code": 7, "phone": PHONE}),
        ("/faults", {"no_such_fault": True}),
        ("/messages", {"from": "1", "to": "2", "text": "x", "count": 0}),
        ("/messages", {"from": "1", "to": "2", "text": "x", "only": "all"}),
        ("/phones/123/logout", ["not", "an", "object"]),
    ],
)
async def test_bad_control_requests_are_answered_400(
    sim: SimServerProcess, path: str, body: object
) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sim.url}{path}", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"


async def test_a_body_that_is_not_json_is_answered_400(sim: SimServerProcess) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sim.url}/scan", content=b"{", headers={"Content-Type": "text"})
    assert r.status_code == 400, r.text


def test_serve_refuses_a_sim_url_without_the_sim_engine(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WAGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/w.db",
        "WAGATE_DATA_DIR": str(tmp_path),
        "WAGATE_ENGINE": "whatsmeow",
        "WAGATE_SIM_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-m", "wagate", "serve"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"WAGATE_SIM_URL is for the simulator" in done.stderr


def test_serve_says_when_the_sim_server_cannot_be_reached(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WAGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/w.db",
        "WAGATE_DATA_DIR": str(tmp_path),
        "WAGATE_PORT": str(free_port()),
        "WAGATE_SIM_URL": f"http://127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "wagate", "serve", "--engine", "sim"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"cannot be reached" in done.stderr and b"Traceback" not in done.stderr


def test_sim_server_says_when_its_port_is_taken(sim: SimServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wagate", "sim-server", "--port", str(sim.port)],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{sim.port}".encode() in done.stderr


async def test_receipts_follow_the_device_to_its_next_connection(tmp_path: Path) -> None:
    """A message sent just before a handoff: its receipts reach the node that serves the device
    by the time they come, as WhatsApp's servers keep them for the device. (The clock runs at
    full speed here: the first receipt comes half a second after the send.)"""
    sim = SimServerProcess(tmp_path / "slow", time_scale=1.0)
    sim.start()
    a, b = Node(sim.url), Node(sim.url)
    try:
        await a.start()
        await b.start()
        credentials = await linked(a, sim, "acct-6")
        wa_id = await a.engine.send_text("acct-6", "5511977770000", "hello")
        await a.engine.disconnect("acct-6")
        await b.engine.connect("acct-6", credentials)

        def all_receipts() -> bool:
            got = [e for e in b.recorder.of("acct-6") if isinstance(e, MessageStatus)]
            return [(e.wa_id, e.status) for e in got] == [
                (wa_id, "sent"),
                (wa_id, "delivered"),
                (wa_id, "read"),
            ]

        assert await b.recorder.wait(all_receipts, WAIT), b.recorder.of("acct-6")
        assert not any(isinstance(e, MessageStatus) for e in a.recorder.of("acct-6"))
    finally:
        await a.engine.close()
        await b.engine.close()
        sim.stop()
