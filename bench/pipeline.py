"""Durable event pipeline: events committed and delivered per second to a local webhook
receiver, against the raw ceiling of the same database (plain INSERT + COMMIT of rows of the
same size, one connection, measured in the same run), plus commit → delivery latency.

    python bench/pipeline.py [--database-url URL] [--accounts 200] [--rounds 5] [--quick]

The workload: N linked sim accounts, then R rounds of network flaps on every phone; each flap
commits four events (reconnecting, disconnected, connected, status) that all go out as webhooks.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import Gateway, admin_headers  # noqa: E402

from receiver import Receiver  # noqa: E402
from wagate.db import Database  # noqa: E402


async def raw_ceiling(url: str, seconds: float, row_bytes: int) -> float:
    """Rows per second of INSERT + COMMIT, one row per transaction, on one connection set up
    as the gateway sets up its own (on SQLite: WAL, ``synchronous=NORMAL``, BEGIN IMMEDIATE)."""
    database = Database(url)
    engine = database.engine
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    payload = "x" * row_bytes
    count = 0
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                f"CREATE TABLE {table} (id VARCHAR(36) PRIMARY KEY, data TEXT NOT NULL)"
            )
        async with engine.connect() as conn:
            deadline = time.monotonic() + seconds
            started = time.monotonic()
            while time.monotonic() < deadline:
                await conn.exec_driver_sql(
                    f"INSERT INTO {table} (id, data) VALUES ('{uuid.uuid4()}', '{payload}')"
                )
                await conn.commit()
                count += 1
            elapsed = time.monotonic() - started
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TABLE {table}")
    finally:
        await database.close()
    return count / elapsed


async def link_all(http: httpx.AsyncClient, auth: dict[str, str], n: int) -> list[str]:
    phones = [f"5512{i:09d}" for i in range(n)]
    gate = asyncio.Semaphore(16)

    async def one(phone: str) -> None:
        async with gate:
            account = (await http.post("/v1/accounts", json={"label": phone}, headers=auth)).json()
            path = f"/v1/accounts/{account['id']}"
            while True:  # a code can rotate away on a busy machine: then link again
                r = await http.post(f"{path}/link", json={"method": "qr"}, headers=auth)
                r.raise_for_status()
                while (qr := await http.get(f"{path}/qr", headers=auth)).status_code != 200:
                    await asyncio.sleep(0.05)
                scan = await http.post(
                    "/v1/sim/scan", headers=auth, json={"code": qr.json()["code"], "phone": phone}
                )
                if scan.json()["result"] == "linked":
                    return

    await asyncio.gather(*(one(p) for p in phones))
    while (
        len((await http.get("/v1/accounts", params={"status": "connected"}, headers=auth)).json())
        < n
    ):
        await asyncio.sleep(0.2)
    return phones


async def run(url: str | None, accounts: int, rounds: int) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="wagate-bench-"))
    database_url = url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    receiver = Receiver()
    await receiver.start()
    gateway = Gateway(workdir, database_url, WAGATE_SIM_TIME_SCALE="0.2")
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60.0) as http:
            workspace = (
                await http.post(
                    "/v1/workspaces",
                    headers=admin_headers(),
                    json={"name": "bench", "webhook_url": receiver.url},
                )
            ).json()
            auth = {"Authorization": f"Bearer {workspace['api_key']}"}
            phones = await link_all(http, auth, accounts)
            before = await _event_count(http, auth)
            while len(receiver.bodies) < before:  # the linking traffic drains first
                await asyncio.sleep(0.1)
            receiver.bodies.clear()
            started = time.monotonic()
            for _ in range(rounds):
                await asyncio.gather(
                    *(http.post(f"/v1/sim/phones/{p}/flap", headers=auth) for p in phones)
                )
                await asyncio.sleep(0.2)
            expected = before + 4 * accounts * rounds
            while await _event_count(http, auth) < expected:
                await asyncio.sleep(0.05)
            committed_at = time.monotonic() - started
            while len(receiver.bodies) < expected - before:
                if time.monotonic() - started > 600:
                    raise RuntimeError(f"{len(receiver.bodies)} of {expected - before} arrived")
                await asyncio.sleep(0.02)
            delivered_at = time.monotonic() - started
        latencies = []
        for arrived, body in receiver.bodies:
            created = datetime.fromisoformat(json.loads(body)["created_at"]).timestamp()
            latencies.append(arrived - created)
        events = expected - before
        row_bytes = int(statistics.mean(len(body) for _, body in receiver.bodies))
    finally:
        gateway.stop()
        await receiver.stop()
    ceiling = await raw_ceiling(database_url, 5.0, row_bytes)
    rate = events / delivered_at
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "database": database_url.split(":", 1)[0].split("+")[0],
        "events": events,
        "committed_per_second": round(events / committed_at, 1),
        "delivered_per_second": round(rate, 1),
        "raw_insert_commit_per_second": round(ceiling, 1),
        "share_of_ceiling": round(rate / ceiling, 3),
        "commit_to_delivery_p50_ms": round(cuts[49] * 1000, 1),
        "commit_to_delivery_p99_ms": round(cuts[98] * 1000, 1),
        "row_bytes": row_bytes,
    }


async def _event_count(http: httpx.AsyncClient, auth: dict[str, str]) -> int:
    total, after = 0, 0
    while True:
        page = (
            await http.get("/v1/events", params={"after": after, "limit": 1000}, headers=auth)
        ).json()
        total += len(page["events"])
        if not page["events"]:
            return total
        after = page["next_after"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 accounts, 2 rounds")
    args = parser.parse_args()
    accounts, rounds = (20, 2) if args.quick else (args.accounts, args.rounds)
    result = asyncio.run(run(args.database_url, accounts, rounds))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
