"""Sessions benchmark: N sim accounts linked and connected in one gateway process, the RSS each
idle connected session adds, and how long a restart after SIGKILL takes to restore them all.

    python bench/sessions.py [--accounts 3000] [--quick] [--database-url URL]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import Gateway, bearer, cpu_seconds, print_result, rss_kib, workspace_key  # noqa: E402


async def connected_count(http: httpx.AsyncClient) -> int:
    """Connected accounts, as an operator watches them: ``wagate_accounts{status="connected"}``
    from ``/metrics`` (one GROUP BY in the gateway, where listing 3,000 accounts every quarter
    second would cost it a fifth of its CPU during a restore)."""
    r = await http.get("/metrics")
    r.raise_for_status()
    for family in text_string_to_metric_families(r.text):
        if family.name == "wagate_accounts":
            for sample in family.samples:
                if sample.labels.get("status") == "connected":
                    return int(sample.value)
    raise RuntimeError('/metrics has no wagate_accounts{status="connected"}')


async def wait_all_connected(http: httpx.AsyncClient, n: int, timeout: float) -> float:
    started = time.monotonic()
    while (count := await connected_count(http)) < n:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"only {count}/{n} connected after {timeout} s")
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def wait_ready(http: httpx.AsyncClient, timeout: float) -> None:
    """Until ``/readyz`` answers 200: the database answers and restoration has finished."""
    deadline = time.monotonic() + timeout
    while (await http.get("/readyz")).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout} s")
        await asyncio.sleep(0.1)


async def link_one(http: httpx.AsyncClient, auth: dict[str, str], n: int) -> int:
    """Link one account; returns how many requests it took (the QR is polled at 10 Hz)."""
    requests = 2
    account = (await http.post("/v1/accounts", json={"label": f"a{n}"}, headers=auth)).json()
    path = f"/v1/accounts/{account['id']}"
    (await http.post(f"{path}/link", json={"method": "qr"}, headers=auth)).raise_for_status()
    for _ in range(5):  # a code that rotated away before the scan: scan the current one, as a user
        while True:
            qr = await http.get(f"{path}/qr", headers=auth)
            requests += 1
            if qr.status_code == 200:
                break
            await asyncio.sleep(0.1)
        scan = await http.post(
            "/v1/sim/scan", headers=auth, json={"code": qr.json()["code"], "phone": f"5511{n:09d}"}
        )
        requests += 1
        result = scan.json()["result"]
        if result == "linked":
            return requests
        if result != "expired_code":
            break
    raise RuntimeError(f"scan answered {result}")


async def run(accounts: int, database_url: str | None, concurrency: int) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="wagate-bench-"))
    gateway = Gateway(workdir, database_url, WAGATE_SIM_TIME_SCALE="0.1")
    gateway.start()
    try:
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=60.0, limits=httpx.Limits(max_connections=concurrency)
        ) as http:
            auth = bearer(await workspace_key(http))
            await asyncio.sleep(1.0)
            baseline = rss_kib(gateway.pid)
            gate = asyncio.Semaphore(concurrency)
            started, cpu = time.monotonic(), cpu_seconds(gateway.pid)

            async def bounded(n: int) -> int:
                async with gate:
                    return await link_one(http, auth, n)

            requests = sum(await asyncio.gather(*(bounded(n) for n in range(accounts))))
            await wait_all_connected(http, accounts, timeout=300)
            link_seconds = time.monotonic() - started
            link_cpu = cpu_seconds(gateway.pid) - cpu
            await asyncio.sleep(3.0)  # idle: let allocator and caches settle
            loaded = rss_kib(gateway.pid)

            gateway.kill()
            gateway.start()
            restart_to_http = time.monotonic() - gateway.started_at
            # Restoration runs in the background once HTTP answers: ready when it has finished
            # (until then the database may still say "connected" of sessions not yet reopened).
            await wait_ready(http, timeout=600)
            await wait_all_connected(http, accounts, timeout=600)
            restore_seconds = time.monotonic() - gateway.started_at
            restore_cpu = cpu_seconds(gateway.pid)  # the new process: all of it since start
    finally:
        gateway.stop()
    return {
        "sessions": accounts,
        "database": (database_url or "sqlite").split(":", 1)[0],
        "link_seconds": round(link_seconds, 2),
        "links_per_second": round(accounts / link_seconds, 1),
        "gateway_cpu_ms_per_link": round(link_cpu * 1000 / accounts, 2),
        "requests_per_link": round(requests / accounts, 1),
        "baseline_rss_kib": baseline,
        "loaded_rss_kib": loaded,
        "rss_per_session_kib": round((loaded - baseline) / accounts, 1),
        "restart_to_http_seconds": round(restart_to_http, 2),
        "restore_seconds": round(restore_seconds, 2),
        "restore_gateway_cpu_seconds": round(restore_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="100 accounts")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    accounts = 100 if args.quick else args.accounts
    result = asyncio.run(run(accounts, args.database_url, args.concurrency))
    print_result(result)


if __name__ == "__main__":
    main()
