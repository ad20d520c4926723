"""Cluster benchmark: N sim accounts linked through two gateway nodes on one database, the RSS
each idle session adds per node, then one node SIGKILLed and the time until the other serves
every session again (failover, no new link attempt).

    python bench/cluster.py --database-url postgresql://postgres@127.0.0.1/postgres
        [--accounts 3000] [--lease 15] [--quick]

The database URL names a server: the benchmark creates a database of its own there and drops it
at the end. Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from wagate.db.database import async_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import Gateway, bearer, cpu_seconds, print_result, rss_kib, workspace_key  # noqa: E402

from sessions import link_one  # noqa: E402

SECRET_KEY = "bench-cluster-secret-key-0123456789"


async def admin(server_url: str, statement: str) -> None:
    engine = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def gauge(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    """One sample of ``/metrics``, 0 when absent."""
    r = await http.get("/metrics")
    r.raise_for_status()
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def wait_for(check, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def run(accounts: int, server_url: str, lease: float, concurrency: int) -> dict[str, object]:
    name = f"wagate_bench_{uuid.uuid4().hex[:10]}"
    await admin(server_url, f"CREATE DATABASE {name}")
    url = make_url(async_url(server_url)).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="wagate-cluster-bench-"))
    env = {
        "WAGATE_SIM_TIME_SCALE": "0.1",
        "WAGATE_LEASE_SECONDS": str(lease),
        "WAGATE_SECRET_KEY": SECRET_KEY,
    }
    nodes = {
        node: Gateway(workdir / node, url, WAGATE_NODE_NAME=node, **env) for node in ("a", "b")
    }
    try:
        for gateway in nodes.values():
            gateway.start()
        limits = httpx.Limits(max_connections=concurrency)
        clients = {
            node: httpx.AsyncClient(base_url=g.url, timeout=60.0, limits=limits)
            for node, g in nodes.items()
        }
        a, b = clients["a"], clients["b"]
        try:
            auth = bearer(await workspace_key(a))
            await asyncio.sleep(1.0)
            baseline = {node: rss_kib(g.pid) for node, g in nodes.items()}
            gate = asyncio.Semaphore(concurrency)

            async def bounded(n: int) -> int:
                async with gate:  # even accounts through a, odd through b
                    return await link_one(a if n % 2 == 0 else b, auth, n)

            started = time.monotonic()
            await asyncio.gather(*(bounded(n) for n in range(accounts)))

            async def all_connected() -> bool:
                return await gauge(a, "wagate_accounts", status="connected") >= accounts

            await wait_for(all_connected, 600, "every account connected")
            link_seconds = time.monotonic() - started
            await asyncio.sleep(3.0 + lease)  # idle; a settled node may hand off its excess
            loaded = {node: rss_kib(g.pid) for node, g in nodes.items()}
            owned = {node: int(await gauge(a, "wagate_node_sessions", node=node)) for node in nodes}

            nodes["a"].kill()
            killed_at = time.monotonic()
            cpu_before = cpu_seconds(nodes["b"].pid)

            async def all_on_b() -> bool:
                held = await gauge(b, "wagate_node_sessions", node="b")
                connected = await gauge(b, "wagate_accounts", status="connected")
                return held >= accounts and connected >= accounts

            await wait_for(all_on_b, 600, "every session served by b")
            failover = time.monotonic() - killed_at
            failover_cpu = cpu_seconds(nodes["b"].pid) - cpu_before
            taken = await gauge(b, "wagate_lease_takeovers_total", reason="failover")
        finally:
            for client in clients.values():
                await client.aclose()
    finally:
        for gateway in nodes.values():
            gateway.stop()
        await admin(server_url, f"DROP DATABASE IF EXISTS {name}")
    return {
        "sessions": accounts,
        "database": server_url.split(":", 1)[0],
        "lease_seconds": lease,
        "link_seconds": round(link_seconds, 2),
        "sessions_owned_a": owned["a"],
        "sessions_owned_b": owned["b"],
        "rss_per_session_kib_a": round((loaded["a"] - baseline["a"]) / max(owned["a"], 1), 1),
        "rss_per_session_kib_b": round((loaded["b"] - baseline["b"]) / max(owned["b"], 1), 1),
        "failed_over": int(taken),
        "failover_seconds": round(failover, 2),
        "failover_after_expiry_seconds": round(failover - lease * 4 / 3, 2),
        "failover_gateway_cpu_seconds": round(failover_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL or MariaDB server")
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--lease", type=float, default=15.0, help="WAGATE_LEASE_SECONDS")
    parser.add_argument("--quick", action="store_true", help="100 accounts, lease 3 s")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    accounts, lease = (100, 3.0) if args.quick else (args.accounts, args.lease)
    result = asyncio.run(run(accounts, args.database_url, lease, args.concurrency))
    print_result(result)


if __name__ == "__main__":
    main()
