"""API latency: ``GET /v1/accounts/{id}`` p50/p99 under load from a second process on loopback.

    python bench/api_latency.py [--accounts 1000] [--seconds 20] [--concurrency 32] [--quick]

The gateway runs as its own ``wagate serve`` process; this script is the load generator.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import Gateway, bearer, workspace_key  # noqa: E402


async def run(
    accounts: int, seconds: float, concurrency: int, database_url: str | None
) -> dict[str, object]:
    gateway = Gateway(Path(tempfile.mkdtemp(prefix="wagate-bench-")), database_url)
    gateway.start()
    try:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0, limits=limits) as http:
            auth = bearer(await workspace_key(http))
            ids = []
            for n in range(accounts):
                r = await http.post("/v1/accounts", json={"label": f"a{n}"}, headers=auth)
                ids.append(r.json()["id"])
            latencies: list[float] = []
            errors = 0
            deadline = time.monotonic() + seconds

            async def worker() -> None:
                nonlocal errors
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    r = await http.get(f"/v1/accounts/{random.choice(ids)}", headers=auth)
                    latencies.append(time.perf_counter() - started)
                    errors += r.status_code != 200

            began = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.monotonic() - began
    finally:
        gateway.stop()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "database": (database_url or "sqlite").split(":", 1)[0],
        "accounts": accounts,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--quick", action="store_true", help="100 accounts, 5 s")
    args = parser.parse_args()
    accounts, seconds = (100, 5.0) if args.quick else (args.accounts, args.seconds)
    result = asyncio.run(run(accounts, seconds, args.concurrency, args.database_url))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
