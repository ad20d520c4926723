"""API latency: ``GET /v1/accounts/{id}`` p50/p99 under load from a second process on loopback.

    python bench/api_latency.py [--accounts 1000] [--seconds 20] [--concurrency 32]
                                [--rate R] [--database-url URL] [--quick]

The gateway runs as its own ``wagate serve`` process; this script is the load generator, an
aiohttp client (about a fifth of httpx's CPU per request, so that one client core can keep the
gateway busy). Two phases of ``--seconds`` each, random account ids, keep-alive connections:

- *saturated*: ``--concurrency`` requests always in flight (a closed loop): the most requests
  per second the gateway answers, and the latency at that load, which is mostly queueing;
- *at a fixed rate*: requests started on a schedule, ``--rate`` per second (by default half the
  saturated throughput), each timed from its scheduled start so that a stalled server is not
  hidden (an open loop): the latency a client sees below capacity.

Both processes' CPU seconds are reported, to tell which side was the limit. Prints a table, then
one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import Gateway, bearer, cpu_seconds, print_result, workspace_key  # noqa: E402


class Load:
    """Timed GETs of random accounts through one keep-alive connection pool."""

    def __init__(self, http: aiohttp.ClientSession, ids: list[str], auth: dict[str, str]):
        self.http, self.ids, self.auth = http, ids, auth
        self.latencies: list[float] = []
        self.errors = 0

    async def one(self, started: float) -> None:
        url = f"/v1/accounts/{random.choice(self.ids)}"
        try:
            async with self.http.get(url, headers=self.auth) as response:
                await response.read()
                ok = response.status == 200
        except aiohttp.ClientError:
            ok = False
        self.latencies.append(time.perf_counter() - started)
        self.errors += not ok

    async def saturated(self, seconds: float, concurrency: int) -> float:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                await self.one(time.perf_counter())

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - began

    async def at_rate(self, seconds: float, rate: float) -> float:
        began = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        n = 0
        while (due := began + n / rate) < began + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(self.one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*pending)
        return time.perf_counter() - began


def figures(load: Load, elapsed: float, prefix: str) -> dict[str, object]:
    cuts = statistics.quantiles(load.latencies, n=100, method="inclusive")
    return {
        f"{prefix}requests": len(load.latencies),
        f"{prefix}errors": load.errors,
        f"{prefix}requests_per_second": round(len(load.latencies) / elapsed, 1),
        f"{prefix}p50_ms": round(cuts[49] * 1000, 2),
        f"{prefix}p99_ms": round(cuts[98] * 1000, 2),
    }


async def run(
    accounts: int, seconds: float, concurrency: int, rate: float | None, database_url: str | None
) -> dict[str, object]:
    gateway = Gateway(Path(tempfile.mkdtemp(prefix="wagate-bench-")), database_url)
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as setup:
            auth = bearer(await workspace_key(setup))
            ids = []
            for n in range(accounts):
                r = await setup.post("/v1/accounts", json={"label": f"a{n}"}, headers=auth)
                ids.append(r.json()["id"])
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=30.0)
        async with aiohttp.ClientSession(gateway.url, connector=connector, timeout=timeout) as http:
            client_cpu, gateway_cpu = time.process_time(), cpu_seconds(gateway.pid)
            full = Load(http, ids, auth)
            elapsed = await full.saturated(seconds, concurrency)
            saturated = figures(full, elapsed, "saturated_")
            saturated["saturated_client_cpu_seconds"] = round(time.process_time() - client_cpu, 1)
            saturated["saturated_gateway_cpu_seconds"] = round(
                cpu_seconds(gateway.pid) - gateway_cpu, 1
            )
            target = rate or max(1.0, len(full.latencies) / elapsed / 2)
            client_cpu, gateway_cpu = time.process_time(), cpu_seconds(gateway.pid)
            paced = Load(http, ids, auth)
            elapsed = await paced.at_rate(seconds, target)
            steady = figures(paced, elapsed, "")
            steady["rate"] = round(target, 1)
            steady["client_cpu_seconds"] = round(time.process_time() - client_cpu, 1)
            steady["gateway_cpu_seconds"] = round(cpu_seconds(gateway.pid) - gateway_cpu, 1)
    finally:
        gateway.stop()
    return {
        "database": (database_url or "sqlite").split(":", 1)[0],
        "accounts": accounts,
        "concurrency": concurrency,
        "seconds": seconds,
        **saturated,
        **steady,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="of each phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=None, help="requests/s of the paced phase")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--quick", action="store_true", help="100 accounts, 5 s per phase")
    args = parser.parse_args()
    accounts, seconds = (100, 5.0) if args.quick else (args.accounts, args.seconds)
    result = asyncio.run(run(accounts, seconds, args.concurrency, args.rate, args.database_url))
    print_result(result)


if __name__ == "__main__":
    main()
