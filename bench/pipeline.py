"""Durable event pipeline: events committed and delivered per second to a local webhook
receiver, against the raw ceiling of the same database (plain INSERT + COMMIT of rows of the
same size, one connection, measured in the same run, through the gateway's own engine and, for
comparison, through the bare driver), plus commit → delivery latency.

    python bench/pipeline.py [--database-url URL] [--accounts 200] [--burst 20] [--quick]

The workload: N linked sim accounts, then every phone receives a burst of B incoming messages at
once (one ``POST /v1/sim/messages`` with ``count``). The engine reports each message as its own
event, so N x B engine events arrive as fast as the engine can make them; each is committed as a
``message.received`` event (an account's consecutive messages in one transaction, up to 64)
and delivered as a signed webhook. The gateway's
CPU time over the run is read from /proc, so the table also says how much CPU one event costs.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import Gateway, bearer, cpu_seconds, print_result, workspace_key  # noqa: E402

from receiver import Receiver  # noqa: E402
from wagate.db.database import Database
from wagate.db.sqlite import PRAGMAS

SENDER = "5511900000000"


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


async def bare_ceiling(url: str, seconds: float, row_bytes: int) -> float:
    """The same rows through the bare driver, without SQLAlchemy (sqlite3 with the gateway's
    pragmas, or asyncpg): what the database itself does, for comparison."""
    parsed = make_url(url)
    table = f"bench_bare_{uuid.uuid4().hex[:8]}"
    payload = "x" * row_bytes
    count, started = 0, time.monotonic()
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", isolation_level=None)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        conn.execute(f"CREATE TABLE {table} (id VARCHAR(36) PRIMARY KEY, data TEXT NOT NULL)")
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                f"INSERT INTO {table} (id, data) VALUES (?, ?)", (str(uuid.uuid4()), payload)
            )
            conn.execute("COMMIT")
            count += 1
        elapsed = time.monotonic() - started
        conn.execute(f"DROP TABLE {table}")
        conn.close()
        return count / elapsed
    if parsed.get_backend_name() != "postgresql":
        return float("nan")
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    pg = await asyncpg.connect(dsn)
    try:
        await pg.execute(f"CREATE TABLE {table} (id VARCHAR(36) PRIMARY KEY, data TEXT NOT NULL)")
        started = time.monotonic()
        while time.monotonic() - started < seconds:  # each statement its own transaction
            await pg.execute(
                f"INSERT INTO {table} (id, data) VALUES ($1, $2)", str(uuid.uuid4()), payload
            )
            count += 1
        elapsed = time.monotonic() - started
        await pg.execute(f"DROP TABLE {table}")
    finally:
        await pg.close()
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


async def run(url: str | None, accounts: int, burst: int) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="wagate-bench-"))
    database_url = url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    receiver = Receiver()
    await receiver.start()
    gateway = Gateway(workdir, database_url, WAGATE_SIM_TIME_SCALE="0.2")
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60.0) as http:
            auth = bearer(await workspace_key(http, receiver.url))
            print(f"linking {accounts} accounts", file=sys.stderr, flush=True)
            phones = await link_all(http, auth, accounts)
            before, last_id = await _events_after(http, auth)
            while len(receiver.bodies) < before:  # the linking traffic drains first
                await asyncio.sleep(0.1)
            receiver.bodies.clear()
            print(f"burst: {burst * accounts} messages", file=sys.stderr, flush=True)
            cpu_before = cpu_seconds(gateway.pid)
            started, started_wall = time.monotonic(), time.time()
            await asyncio.gather(
                *(
                    http.post(
                        "/v1/sim/messages",
                        headers=auth,
                        json={"from": SENDER, "to": phone, "text": "benchmark", "count": burst},
                    )
                    for phone in phones
                )
            )
            events = burst * accounts
            while len(receiver.bodies) < events:
                if time.monotonic() - started > 600:
                    raise RuntimeError(f"{len(receiver.bodies)} of {events} arrived")
                await asyncio.sleep(0.01)
            delivered_at = time.monotonic() - started
            cpu = cpu_seconds(gateway.pid) - cpu_before
            # Polling consumers see the same events (read after the run, not during it).
            assert (await _events_after(http, auth, last_id))[0] == events
        latencies, created = [], []
        for arrived, body in receiver.bodies:
            created.append(datetime.fromisoformat(json.loads(body)["created_at"]).timestamp())
            latencies.append(arrived - created[-1])
        # ``created_at`` is stamped inside the committing transaction.
        committed_at = max(created) - started_wall
        row_bytes = int(statistics.mean(len(body) for _, body in receiver.bodies))
    finally:
        gateway.stop()
        await receiver.stop()
    ceiling = await raw_ceiling(database_url, 5.0, row_bytes)
    bare = await bare_ceiling(database_url, 5.0, row_bytes)
    rate = events / delivered_at
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "database": database_url.split(":", 1)[0].split("+")[0],
        "events": events,
        "committed_per_second": round(events / committed_at, 1),
        "delivered_per_second": round(rate, 1),
        "raw_insert_commit_per_second": round(ceiling, 1),
        "share_of_ceiling": round(rate / ceiling, 3),
        "bare_driver_insert_commit_per_second": round(bare, 1),
        "share_of_bare_ceiling": round(rate / bare, 3),
        "commit_to_delivery_p50_ms": round(cuts[49] * 1000, 1),
        "commit_to_delivery_p99_ms": round(cuts[98] * 1000, 1),
        "row_bytes": row_bytes,
        "gateway_cpu_ms_per_event": round(cpu * 1000 / events, 2),
    }


async def _events_after(
    http: httpx.AsyncClient, auth: dict[str, str], after: int = 0
) -> tuple[int, int]:
    """How many events the workspace has after event id ``after``, and the last id."""
    total = 0
    while True:
        page = (
            await http.get("/v1/events", params={"after": after, "limit": 1000}, headers=auth)
        ).json()
        total += len(page["events"])
        if not page["events"]:
            return total, after
        after = page["next_after"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--burst", type=int, default=20, help="messages per phone (1-1000)")
    parser.add_argument("--quick", action="store_true", help="20 accounts, bursts of 10")
    args = parser.parse_args()
    accounts, burst = (20, 10) if args.quick else (args.accounts, args.burst)
    result = asyncio.run(run(args.database_url, accounts, burst))
    print_result(result)


if __name__ == "__main__":
    main()
