"""Real ``wagate serve`` processes killed and started again: sessions come back by account id."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.apiclient import ApiClient
from tests.conftest import ADMIN_KEY
from tests.serve import Server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.stop()


@pytest.fixture
async def client_for() -> AsyncIterator[object]:
    clients: list[httpx.AsyncClient] = []

    def make(server: Server) -> ApiClient:
        http = httpx.AsyncClient(base_url=server.url, timeout=10.0)
        clients.append(http)
        return ApiClient(http, None, ADMIN_KEY)

    yield make
    for http in clients:
        await http.aclose()


def phone(n: int) -> str:
    return f"55119{n:08d}"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sigkill_restores_every_account_by_id(  # type: ignore[no-untyped-def]
    backend, fresh_database_url, servers, client_for, tmp_path
) -> None:
    server = Server(await fresh_database_url(backend), tmp_path / "data")
    servers.append(server)
    server.start()
    api = client_for(server)
    tenant = await api.tenant()
    accounts = [await api.account(tenant, f"line {n}") for n in range(20)]
    for n, account in enumerate(accounts):
        await api.link_phone(tenant, account["id"], phone(n))
    before = {a["id"]: await api.attempts(tenant, a["id"]) for a in accounts}
    pending = await api.account(tenant, "pending")
    await api.link(tenant, pending["id"])
    await api.qr(tenant, pending["id"])

    server.kill()
    server.start()

    async def restored() -> bool:
        return (await api.http.get("/readyz")).status_code == 200

    deadline = time.monotonic() + 30
    while not await restored():
        assert time.monotonic() < deadline, "restoration did not finish"
        await asyncio.sleep(0.05)
    for n, account in enumerate(accounts):
        back = await api.wait_status(tenant, account["id"], "connected")
        assert back["phone"] == phone(n)
        # The same one linked attempt, no new one and no code shown since.
        [attempt] = await api.attempts(tenant, account["id"])
        assert attempt["outcome"] == "linked" and [attempt] == before[account["id"]]
        # A live session in the new process (the database alone would still say "connected"):
        # a message to the number reaches the device.
        body = {"from": "5511977770000", "to": phone(n), "text": "back?"}
        r = await api.http.post("/v1/sim/messages", json=body, headers=tenant.auth)
        assert r.json()["devices"] == 1, r.text
    [interrupted] = await api.attempts(tenant, pending["id"])
    assert interrupted["outcome"] == "interrupted"
    assert (await api.get_account(tenant, pending["id"]))["status"] == "unlinked"
    await api.link_phone(tenant, pending["id"], phone(99))


async def test_sigterm_stops_within_five_seconds_and_restores(  # type: ignore[no-untyped-def]
    fresh_database_url, servers, client_for, tmp_path
) -> None:
    server = Server(await fresh_database_url("sqlite"), tmp_path / "data")
    servers.append(server)
    server.start()
    api = client_for(server)
    tenant = await api.tenant()
    accounts = [await api.account(tenant, f"line {n}") for n in range(5)]
    for n, account in enumerate(accounts):
        await api.link_phone(tenant, account["id"], phone(n))
    stopped = accounts[0]
    r = await api.http.post(f"/v1/accounts/{stopped['id']}/stop", headers=tenant.auth)
    assert r.status_code == 200 and r.json()["status"] == "stopped"

    seconds = server.terminate()
    assert seconds < 5.0
    # uvicorn ends by re-raising the signal it handled, so a clean stop exits "by SIGTERM".
    assert server.process is not None and server.process.returncode in (0, -signal.SIGTERM)
    assert server.log is not None and "Application shutdown complete" in server.log.read_text()
    server.start()

    for account in accounts[1:]:
        await api.wait_status(tenant, account["id"], "connected")
    assert (await api.get_account(tenant, stopped["id"]))["status"] == "stopped"
    r = await api.http.post(f"/v1/accounts/{stopped['id']}/start", headers=tenant.auth)
    assert r.status_code == 200
    await api.wait_status(tenant, stopped["id"], "connected")


async def _damage_stored_credentials(store: str, server: Server, account_id: str) -> None:
    """Flip one byte of the account's ciphertext where the store keeps it."""
    if store == "db":
        import sqlite3

        path = server.database_url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            [(blob,)] = conn.execute(
                "SELECT ciphertext FROM auth_states WHERE account_id = ?", (account_id,)
            )
            conn.execute(
                "UPDATE auth_states SET ciphertext = ? WHERE account_id = ?",
                (blob[:-1] + bytes([blob[-1] ^ 1]), account_id),
            )
    elif store == "file":
        path = server.data_dir / "auth" / f"{account_id}.cred"
        raw = path.read_bytes()
        path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    else:
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(server.env["WAGATE_REDIS_URL"])
        key = f"wagate:auth:{account_id}"
        blob = await client.hget(key, "ciphertext")  # type: ignore[misc]
        await client.hset(key, "ciphertext", blob[:-1] + bytes([blob[-1] ^ 1]))  # type: ignore[misc]
        await client.aclose()


async def _stored(store: str, server: Server, account_id: str) -> bool:
    if store == "db":
        import sqlite3

        path = server.database_url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT 1 FROM auth_states WHERE account_id = ?", (account_id,))
            return bool(list(rows))
    if store == "file":
        return (server.data_dir / "auth" / f"{account_id}.cred").exists()
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(server.env["WAGATE_REDIS_URL"])
    found = bool(await client.exists(f"wagate:auth:{account_id}"))
    await client.aclose()
    return found


@pytest.mark.parametrize("store", ["db", "file", "redis"])
async def test_corrupt_credentials_log_out_that_account_only(  # type: ignore[no-untyped-def]
    store, fresh_database_url, servers, client_for, tmp_path
) -> None:
    env = {"WAGATE_AUTH_STORE": store}
    if store == "redis":
        from tests.conftest import service_url

        env["WAGATE_REDIS_URL"] = service_url("redis")
    server = Server(await fresh_database_url("sqlite"), tmp_path / "data", env=env)
    servers.append(server)
    server.start()
    api = client_for(server)
    tenant = await api.tenant()
    accounts = [await api.account(tenant, f"line {n}") for n in range(3)]
    for n, account in enumerate(accounts):
        await api.link_phone(tenant, account["id"], phone(n))
    damaged = accounts[1]["id"]
    server.terminate()
    await _damage_stored_credentials(store, server, damaged)

    server.start()
    gone = await api.wait_status(tenant, damaged, "logged_out")
    assert gone["status_reason"] == "credentials_corrupt"
    for account in (accounts[0], accounts[2]):
        await api.wait_status(tenant, account["id"], "connected")
    assert not await _stored(store, server, damaged)
    assert await _stored(store, server, accounts[0]["id"])
    r = await api.http.get("/v1/accounts", params={"status": "logged_out"}, headers=tenant.auth)
    assert [a["id"] for a in r.json()] == [damaged]
    if store == "redis":  # leave nothing behind on the shared server
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(env["WAGATE_REDIS_URL"])
        for account in accounts:
            await client.delete(f"wagate:auth:{account['id']}")
        await client.aclose()


async def test_doctor_reads_a_real_serve_log(  # type: ignore[no-untyped-def]
    fresh_database_url, servers, client_for, tmp_path
) -> None:
    """The messages wagate logs and the ones the doctor looks for are one set: a real run's
    JSON log gives back the attempts that run made."""
    from typer.testing import CliRunner

    from wagate.cli.main import app

    server = Server(await fresh_database_url("sqlite"), tmp_path / "data")
    servers.append(server)
    server.start()
    api = client_for(server)
    tenant = await api.tenant()
    linked, cancelled = await api.account(tenant, "linked"), await api.account(tenant, "gone")
    await api.link_phone(tenant, linked["id"], phone(1))
    await api.link(tenant, cancelled["id"])
    await api.qr(tenant, cancelled["id"])
    await api.cancel(tenant, cancelled["id"])
    server.terminate()

    assert server.log is not None
    result = CliRunner().invoke(app, ["doctor", "logs", str(server.log), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["attempts"], report["ready"], report["qr_codes"]) == (2, 1, 2)
