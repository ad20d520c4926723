"""Scale-out benchmark: link throughput and event-pipeline throughput with 1 node and with 2
nodes on one database, the nodes sharing one ``wagate sim-server``, and the ratio of the two.

    python bench/scaleout.py --database-url postgresql://postgres@127.0.0.1/postgres
        [--accounts 300] [--burst 20] [--quick]

For each cluster size, on a fresh database of its own: N accounts linked through the nodes in
turn (32 at a time: link, read the QR code, scan, until connected) gives links per second; then
every phone receives a burst of B messages at once, sent straight to the sim-server so that no
node's API carries them, and the time until the N x B ``message.received`` webhooks reached a
local receiver gives events per second. Each node's CPU time is read from /proc. Prints a table,
then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from wagate.db.database import async_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import SECRET_KEY, admin, gauge, wait_for  # noqa: E402
from gateway import (  # noqa: E402
    Gateway,
    bearer,
    cpu_seconds,
    free_port,
    print_result,
    wait_ready,
    workspace_key,
)

from receiver import Receiver  # noqa: E402
from sessions import link_one  # noqa: E402

SENDER = "5511900000000"
CONCURRENCY = 32


class SimServer:
    """A ``wagate sim-server`` process on a free local port."""

    def __init__(self, workdir: Path, time_scale: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "sim-server.log"
        env = {
            **os.environ,
            "WAGATE_SIM_TIME_SCALE": str(time_scale),
            "WAGATE_LOG_LEVEL": "WARNING",
        }
        workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wagate", "sim-server", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=out,
            )
        wait_ready(self.process, f"{self.url}/health", self.log, 30.0, "sim-server")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


async def measure(server_url: str, nodes: int, accounts: int, burst: int) -> dict[str, float]:
    name = f"wagate_bench_{uuid.uuid4().hex[:10]}"
    await admin(server_url, f"CREATE DATABASE {name}")
    url = make_url(async_url(server_url)).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="wagate-scaleout-bench-"))
    sim = SimServer(workdir / "sim", time_scale=0.2)
    receiver = Receiver()
    await receiver.start()
    env = {"WAGATE_SECRET_KEY": SECRET_KEY, "WAGATE_SIM_URL": sim.url}
    gateways = [
        Gateway(workdir / f"n{i}", url, WAGATE_NODE_NAME=f"n{i}", **env) for i in range(nodes)
    ]
    limits = httpx.Limits(max_connections=CONCURRENCY)
    try:
        for gateway in gateways:
            gateway.start()
        clients = [httpx.AsyncClient(base_url=g.url, timeout=60.0, limits=limits) for g in gateways]
        try:
            auth = bearer(await workspace_key(clients[0], receiver.url))
            gate = asyncio.Semaphore(CONCURRENCY)

            async def bounded(n: int) -> int:
                async with gate:  # the nodes in turn, as a load balancer would
                    return await link_one(clients[n % nodes], auth, n)

            cpu = [cpu_seconds(g.pid) for g in gateways]
            started = time.monotonic()
            await asyncio.gather(*(bounded(n) for n in range(accounts)))

            async def all_connected() -> bool:
                return await gauge(clients[0], "wagate_accounts", status="connected") >= accounts

            await wait_for(all_connected, 600, "every account connected")
            link_seconds = time.monotonic() - started
            link_cpu = sum(cpu_seconds(g.pid) for g in gateways) - sum(cpu)
            linking_events = len(receiver.bodies)
            await asyncio.sleep(2.0)  # the linking webhooks drain
            while len(receiver.bodies) > linking_events:
                linking_events = len(receiver.bodies)
                await asyncio.sleep(1.0)
            receiver.bodies.clear()

            cpu = [cpu_seconds(g.pid) for g in gateways]
            events = accounts * burst
            async with httpx.AsyncClient(base_url=sim.url, timeout=60.0, limits=limits) as phones:
                started = time.monotonic()
                await asyncio.gather(
                    *(
                        phones.post(
                            "/messages",
                            json={"from": SENDER, "to": f"5511{n:09d}", "text": "bench",
                                  "count": burst},
                        )
                        for n in range(accounts)
                    )
                )  # fmt: skip
                while len(receiver.bodies) < events:
                    if time.monotonic() - started > 600:
                        raise RuntimeError(f"{len(receiver.bodies)} of {events} arrived")
                    await asyncio.sleep(0.01)
            pipeline_seconds = time.monotonic() - started
            pipeline_cpu = sum(cpu_seconds(g.pid) for g in gateways) - sum(cpu)
        finally:
            for client in clients:
                await client.aclose()
    finally:
        for gateway in gateways:
            gateway.stop()
        sim.stop()
        await receiver.stop()
        await admin(server_url, f"DROP DATABASE IF EXISTS {name}")
    return {
        "links_per_second": round(accounts / link_seconds, 1),
        "gateway_cpu_ms_per_link": round(link_cpu * 1000 / accounts, 1),
        "events_per_second": round(events / pipeline_seconds, 1),
        "gateway_cpu_ms_per_event": round(pipeline_cpu * 1000 / events, 2),
    }


async def run(server_url: str, accounts: int, burst: int) -> dict[str, object]:
    result: dict[str, object] = {
        "database": server_url.split(":", 1)[0],
        "accounts": accounts,
        "events": accounts * burst,
        "cores": os.cpu_count() or 0,
    }
    measured = {}
    for nodes in (1, 2):
        print(
            f"{nodes} node(s): linking {accounts}, then {accounts * burst} events", file=sys.stderr
        )
        measured[nodes] = await measure(server_url, nodes, accounts, burst)
        result.update({f"{k}_{nodes}_node": v for k, v in measured[nodes].items()})
    for key in ("links_per_second", "events_per_second"):
        result[f"{key}_ratio_2_to_1"] = round(measured[2][key] / measured[1][key], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL or MariaDB server")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--burst", type=int, default=20, help="messages per phone")
    parser.add_argument("--quick", action="store_true", help="30 accounts, bursts of 5")
    args = parser.parse_args()
    accounts, burst = (30, 5) if args.quick else (args.accounts, args.burst)
    result = asyncio.run(run(args.database_url, accounts, burst))
    print_result(result)


if __name__ == "__main__":
    main()
