"""Event latency: engine event → SSE client and → webhook receiver, p50 and p99, while N
accounts link at once.

    python bench/latency.py [--accounts 1000] [--scan-rate 50] [--time-scale 1.0]
                            [--sse-workers 2] [--database-url URL] [--quick]

The workload: N accounts, one SSE stream (``GET /v1/accounts/{id}/events``) open on each before
anything happens, then a QR link attempt opened on every account (``--link-concurrency`` at a
time), so that N attempts are open at the same time; once every account's stream has shown its
code (``link.qr``; the client reads codes there, as a console would, instead of polling
``GET /qr``), simulated phones scan the N codes at a steady ``--scan-rate`` per second, 50 by
default: 1,000 phones within 20 s (a burst, or a rate past the gateway's capacity, measures
queueing, not latency). The workspace's webhook goes to a local receiver in this
process answering 200 at once.

What happens at a scan, in the sim engine: ``POST /v1/sim/scan`` resolves the attempt's outcome
synchronously inside the request; the engine's link task wakes on the next turn of the gateway's
event loop and emits ``Paired`` (committed as ``link.paired``) and the credentials, then
``Connected`` follows after 1 sim second (``--time-scale`` seconds), committed as
``session.connected``, ``link.succeeded`` and ``account.status``. QR codes rotate on the sim's own
timers (first code 60 sim s, then five of 20 s); a scan that meets a rotated code reads the
current one and scans again (counted as ``rescans``). ``open_attempts`` says how many attempts
were still open when scanning began: fewer than N means the first codes ran out while the last
attempts were being opened; raise ``--time-scale`` then (the attempt sweeper's silence is scaled
with it). ``--quick`` is 50 accounts.

Figures (p50, p99, max in ms, and the count):

- ``scan_to_sse`` / ``scan_to_webhook``: t0, taken just before sending the scan, → arrival of the
  account's ``link.paired`` on its SSE stream / at the receiver. t0 comes a little before the
  engine event, so these overstate the engine-event latency by the scan request's own handling
  (``scan_request`` gives its round trip).
- ``scan_to_commit``: t0 → ``created_at`` of the ``link.paired`` event, the part of the above
  spent before the event is written (scan request, engine, waiting for the account's turn).
- ``commit_to_sse`` / ``commit_to_webhook``: the envelope's ``created_at`` (set when the event row
  is written, inside the committing transaction) → arrival, over every event of the run,
  including those the sim emits on its own timers (rotated codes, ``Connected``) and those of
  the opening of the N attempts (a burst of link commands, not of engine events);
- ``scanning_commit_to_sse`` / ``scanning_commit_to_webhook``: the same, over the events created
  once scanning began.

The SSE streams are read by ``--sse-workers`` client subprocesses (plain asyncio sockets, no HTTP
library), so that the frames' arrival times do not queue behind the process that schedules the
scans and runs the receiver; every process reports its CPU seconds, so the reader can tell
whether the client side was the limit. A stream the gateway ends is reopened after 2 s with
``Last-Event-ID``, as a browser would (``sse_reconnects``); its events still count, late. A 5xx
answer to this process's requests is retried a second later (``server_errors``; a scan's t0 is
then its first try).
``gateway_idle_cpu_percent`` is the gateway's CPU while the N streams are open and nothing
happens. All clocks are ``time.time()`` on the one machine.

A PostgreSQL ``--database-url`` naming a database that does not exist gets it created for the
run and dropped after it; an existing one is used as it is.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import Gateway, bearer, cpu_seconds, workspace_key  # noqa: E402

from receiver import Receiver  # noqa: E402
from wagate.db.database import async_url

# (unix time of arrival, event id, account id, type, created_at) of one event a client saw.
Arrival = tuple[float, int, str, str, str]


# -- SSE clients (run in subprocesses) -----------------------------------------------------------


RETRY_SECONDS = 2.0  # what the gateway's ``retry:`` field asks of a client before it reconnects


@dataclass
class _Stream:
    """One account's event stream, reopened after ``Last-Event-ID`` when the server ends it,
    as a browser's EventSource would; nothing is lost, the lost time counts in the figures."""

    host: str
    port: int
    key: str
    account_id: str
    seen: list[Arrival]
    reports: Connection
    last_id: int = 0  # the account is new: 0 (the whole history) is "from now on"
    reconnects: int = 0
    writer: asyncio.StreamWriter | None = None

    async def open(self) -> asyncio.StreamReader:
        reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(
            f"GET /v1/accounts/{self.account_id}/events HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {self.key}\r\n"
            f"Accept: text/event-stream\r\nLast-Event-ID: {self.last_id}\r\n\r\n".encode()
        )
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        if not head.startswith(b"http/1.1 200") or b"transfer-encoding: chunked" not in head:
            raise RuntimeError(f"event stream of {self.account_id}: {head.splitlines()[0]!r}")
        return reader

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def follow(self, reader: asyncio.StreamReader) -> None:
        while True:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await self._read(reader)
            self.close()
            while True:
                self.reconnects += 1
                await asyncio.sleep(RETRY_SECONDS)
                try:
                    reader = await self.open()
                    break
                except (OSError, asyncio.IncompleteReadError, RuntimeError):
                    self.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Decode the chunked body until it ends, note the arrival of every ``data:`` frame and
        pass each QR code on to the parent (codes stay in memory: never printed)."""
        buffer = b""
        while (line := await reader.readline()) and (size := int(line.split(b";")[0], 16)):
            chunk = await reader.readexactly(size + 2)
            arrived = time.time()
            buffer += chunk[:-2]
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                for field_line in frame.split(b"\n"):
                    if field_line.startswith(b"data: "):
                        self._note(arrived, json.loads(field_line[6:]))

    def _note(self, arrived: float, event: dict[str, Any]) -> None:
        kind = event["type"]
        self.seen.append((arrived, event["id"], self.account_id, kind, event["created_at"]))
        self.last_id = event["id"]
        if kind == "link.qr":
            self.reports.send(("qr", self.account_id, event["data"]["code"]))


async def _sse_client(
    base_url: str, key: str, account_ids: list[str], orders: Connection, reports: Connection
) -> None:
    started = time.process_time()
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    seen: list[Arrival] = []
    streams = [_Stream(host, port, key, a, seen, reports) for a in account_ids]
    gate = asyncio.Semaphore(32)

    async def opened(stream: _Stream) -> asyncio.StreamReader:
        async with gate:
            return await stream.open()

    readers = await asyncio.gather(*(opened(s) for s in streams))
    tasks = [asyncio.create_task(s.follow(r)) for s, r in zip(streams, readers, strict=True)]
    reports.send(("ready", len(streams)))
    expected, timeout = await asyncio.to_thread(orders.recv)
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        if any(task.done() for task in tasks):  # follow() ends only by failing
            break
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    ended = await asyncio.gather(*tasks, return_exceptions=True)
    for stream in streams:
        stream.close()
    failed = [r for r in ended if not isinstance(r, asyncio.CancelledError)]
    if failed:
        raise RuntimeError(f"an event stream failed: {failed[0]!r}")
    reconnects = sum(s.reconnects for s in streams)
    reports.send(("done", seen, time.process_time() - started, reconnects))


def sse_client(
    base_url: str, key: str, account_ids: list[str], orders: Connection, reports: Connection
) -> None:
    """One client subprocess: open a stream per account, say ready, pass QR codes on as they
    come, read until told how many events to expect, then send back what arrived and the
    process's CPU seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the run
    try:
        asyncio.run(_sse_client(base_url, key, account_ids, orders, reports))
    except EOFError:
        pass  # the parent is gone: nobody is left to report to
    except Exception as exc:
        with contextlib.suppress(OSError):
            reports.send(("error", f"{type(exc).__name__}: {exc}"))


@dataclass
class _Client:
    process: multiprocessing.process.BaseProcess
    orders: Connection  # parent → child: how many events to wait for
    reports: Connection  # child → parent: ready, QR codes, what arrived
    share: set[str]
    ready: asyncio.Future[None]
    done: asyncio.Future[tuple[list[Arrival], float, int]]
    listener: asyncio.Task[None] | None = None


@dataclass
class SseClients:
    """The SSE client subprocesses, and the latest QR code each account's stream showed."""

    clients: list[_Client] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)

    async def start(
        self, base_url: str, key: str, account_ids: list[str], workers: int, timeout: float
    ) -> None:
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for n in range(workers):
            share = account_ids[n::workers]
            their_orders, orders = context.Pipe(duplex=False)
            reports, their_reports = context.Pipe(duplex=False)
            process = context.Process(
                target=sse_client,
                args=(base_url, key, share, their_orders, their_reports),
                daemon=True,
            )
            process.start()
            their_orders.close()  # only the child holds these now: its end ends our reads
            their_reports.close()
            client = _Client(
                process, orders, reports, set(share), loop.create_future(), loop.create_future()
            )
            client.listener = asyncio.create_task(self._listen(client))
            self.clients.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in self.clients)), timeout)

    async def _listen(self, client: _Client) -> None:
        try:
            while True:
                message = await asyncio.to_thread(client.reports.recv)
                if message[0] == "qr":
                    self.codes[message[1]] = message[2]
                elif message[0] == "ready":
                    client.ready.set_result(None)
                elif message[0] == "done":
                    client.done.set_result((message[1], message[2], message[3]))
                    return
                else:
                    raise RuntimeError(f"SSE client failed: {message[1]}")
        except (EOFError, OSError, RuntimeError) as exc:
            failure = exc if isinstance(exc, RuntimeError) else RuntimeError("SSE client died")
            for future in (client.ready, client.done):
                if not future.done():
                    future.set_exception(failure)

    async def wait_codes(self, account_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        progress = time.monotonic() + 30
        while missing := [a for a in account_ids if a not in self.codes]:
            if time.monotonic() > progress:
                note(f"{len(account_ids) - len(missing)} of {len(account_ids)} codes shown")
                progress += 30
            for client in self.clients:
                if client.listener is not None and client.listener.done():
                    await client.done  # raises what ended it
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} accounts showed no QR code")
            await asyncio.sleep(0.05)

    async def collect(
        self, expected_per_account: dict[str, int], timeout: float
    ) -> tuple[list[Arrival], float, int]:
        for client in self.clients:
            client.orders.send((sum(expected_per_account.get(a, 0) for a in client.share), timeout))
        seen: list[Arrival] = []
        cpu, reconnects = 0.0, 0
        for arrivals, seconds, reopened in await asyncio.gather(*(c.done for c in self.clients)):
            seen.extend(arrivals)
            cpu += seconds
            reconnects += reopened
        return seen, cpu, reconnects

    async def close(self) -> None:
        for client in self.clients:
            client.orders.close()  # a client still waiting for its orders ends on EOF
        for client in self.clients:
            await asyncio.to_thread(client.process.join, 10)
            if client.process.is_alive():
                client.process.kill()
                await asyncio.to_thread(client.process.join, 5)
        for client in self.clients:
            if client.listener is not None:
                await asyncio.gather(client.listener, return_exceptions=True)
            for future in (client.ready, client.done):  # failures already raised, or moot
                if future.done() and not future.cancelled():
                    future.exception()
            client.reports.close()


# -- the run --------------------------------------------------------------------------------------


async def ensure_database(url: str) -> bool:
    """Create a missing PostgreSQL database; True when this run created it."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql") or parsed.database in (None, "postgres"):
        return False
    server = parsed.set(database="postgres").render_as_string(hide_password=False)
    engine = create_async_engine(async_url(server), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            query = text("SELECT 1 FROM pg_database WHERE datname = :name")
            if (await conn.execute(query, {"name": parsed.database})).first() is not None:
                return False
            await conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
            return True
    finally:
        await engine.dispose()


async def drop_database(url: str) -> None:
    parsed = make_url(url)
    server = parsed.set(database="postgres").render_as_string(hide_password=False)
    engine = create_async_engine(async_url(server), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await engine.dispose()


def note(line: str) -> None:
    """Progress of a long run, on stderr: stdout is the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


class RetryServerErrors(httpx.AsyncHTTPTransport):
    """Sends a request again, up to 10 times a second apart, while the gateway answers 5xx (a
    database pool running dry under load does that); every such answer is counted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(10):
            response = await super().handle_async_request(request)
            if response.status_code < 500:
                return response
            await response.aclose()
            self.errors += 1
            await asyncio.sleep(1.0)
        return await super().handle_async_request(request)


async def current_code(http: httpx.AsyncClient, auth: dict[str, str], account_id: str) -> str:
    """The account's live QR code; opens an attempt when none is open (the call is idempotent)."""
    path = f"/v1/accounts/{account_id}"
    (await http.post(f"{path}/link", json={"method": "qr"}, headers=auth)).raise_for_status()
    while (qr := await http.get(f"{path}/qr", headers=auth)).status_code != 200:
        await asyncio.sleep(0.1)  # 10 Hz: faster polling competes with the gateway
    return str(qr.json()["code"])


@dataclass
class Scans:
    sent: dict[str, float] = field(default_factory=dict)  # account id → t0 of the linking scan
    round_trips: list[float] = field(default_factory=list)
    rescans: int = 0


async def scan_all(
    http: httpx.AsyncClient,
    auth: dict[str, str],
    account_ids: list[str],
    codes: dict[str, str],
    phones: dict[str, str],
    rate: float,
) -> Scans:
    """Scan every account's latest code at ``rate`` per second, open loop: a slow answer delays
    no later scan."""
    scans = Scans()

    async def one(account_id: str) -> None:
        code = codes[account_id]
        for _ in range(6):
            t0 = time.time()
            r = await http.post("/v1/sim/scan", json={"code": code, "phone": phones[account_id]})
            scans.round_trips.append(time.time() - t0)
            r.raise_for_status()
            if r.json()["result"] == "linked":
                scans.sent[account_id] = t0
                return
            scans.rescans += 1
            code = await current_code(http, auth, account_id)
        raise RuntimeError(f"account {account_id}: no scan was taken")

    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for n, account_id in enumerate(account_ids):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(account_id)))
    await asyncio.gather(*tasks)
    return scans


async def committed_events(http: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        r = await http.get("/v1/events", params={"after": after, "limit": 1000}, headers=auth)
        page = r.json()
        if not page["events"]:
            return found
        found.extend(page["events"])
        after = page["next_after"]


async def wait_connected(
    http: httpx.AsyncClient, auth: dict[str, str], n: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get("/v1/accounts", params={"status": "connected"}, headers=auth)
        count = len(r.json())
        if count == n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {n} accounts connected after {timeout:.0f} s")
        await asyncio.sleep(1.0)


async def wait_webhooks(receiver: Receiver, ids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if len(receiver.bodies) >= len(ids):  # parse only then: deliveries may repeat
            missing = ids - {int(json.loads(body)["id"]) for _, body in receiver.bodies}
            if not missing:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(receiver.bodies)} of {len(ids)} webhooks came")
        await asyncio.sleep(0.05)


def unix(created_at: str) -> float:
    return datetime.fromisoformat(created_at).timestamp()


def figure(name: str, latencies: list[float]) -> dict[str, float | int]:
    if len(latencies) < 2:
        raise RuntimeError(f"{name}: {len(latencies)} samples, too few for percentiles")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        f"{name}_p50_ms": round(cuts[49] * 1000, 1),
        f"{name}_p99_ms": round(cuts[98] * 1000, 1),
        f"{name}_max_ms": round(max(latencies) * 1000, 1),
        f"{name}_count": len(latencies),
    }


def latencies(
    arrivals: Iterable[Arrival], sent: dict[str, float], since: float
) -> tuple[list[float], list[float], list[float]]:
    """(t0 → arrival of link.paired, created_at → arrival of every event, the same for the
    events created from ``since`` on), first copy only."""
    first: dict[int, Arrival] = {}
    for arrival in sorted(arrivals):
        first.setdefault(arrival[1], arrival)
    paired = [t - sent[a] for t, _, a, kind, _ in first.values() if kind == "link.paired"]
    created = [(unix(c), t) for t, _, _, _, c in first.values()]
    every = [t - c for c, t in created]
    return paired, every, [t - c for c, t in created if c >= since]


def webhook_arrivals(bodies: list[tuple[float, bytes]]) -> list[Arrival]:
    found: list[Arrival] = []
    for arrived, body in bodies:
        event = json.loads(body)
        found.append(
            (arrived, event["id"], event["account_id"], event["type"], event["created_at"])
        )
    return found


@dataclass
class Options:
    accounts: int
    scan_rate: float
    time_scale: float
    sse_workers: int
    link_concurrency: int
    idle_seconds: float
    database_url: str | None


async def run(options: Options) -> dict[str, object]:  # noqa: C901 - one linear scenario
    workdir = Path(tempfile.mkdtemp(prefix="wagate-bench-"))
    note(f"gateway files (serve.log) in {workdir}")
    database_url = options.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    created_database = await ensure_database(database_url)
    receiver = Receiver()
    await receiver.start()
    gateway = Gateway(
        workdir,
        database_url,
        WAGATE_SIM_TIME_SCALE=str(options.time_scale),
        # The sweeper's silence is in real seconds, the sim's code lifetimes in sim seconds:
        # a slowed sim clock would otherwise look like a silent engine.
        WAGATE_ATTEMPT_SILENCE_SECONDS=str(300.0 * max(1.0, options.time_scale)),
    )
    clients = SseClients()
    # How long each wait may take before the run fails with what is missing.
    patience = 60.0 + 1.0 * options.accounts
    cpu_started = time.process_time()
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends them, so that a scan
    # never goes out on a connection the server is closing.
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=2)
    transport = RetryServerErrors(limits=limits)
    try:
        gateway.start()
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=120.0, transport=transport
        ) as http:
            key = await workspace_key(http, receiver.url)
            auth = bearer(key)
            http.headers.update(auth)
            gate = asyncio.Semaphore(options.link_concurrency)

            async def create(n: int) -> str:
                async with gate:
                    r = await http.post("/v1/accounts", json={"label": f"latency-{n}"})
                    r.raise_for_status()
                    return str(r.json()["id"])

            ids = list(await asyncio.gather(*(create(n) for n in range(options.accounts))))
            phones = {a: f"5513{n:09d}" for n, a in enumerate(ids)}
            baseline = max((int(e["id"]) for e in await committed_events(http, auth)), default=0)
            await clients.start(gateway.url, key, ids, options.sse_workers, patience)

            # What the open streams alone cost the gateway, before anything happens.
            idle_cpu = cpu_seconds(gateway.pid)
            await asyncio.sleep(options.idle_seconds)
            idle_cpu = (cpu_seconds(gateway.pid) - idle_cpu) / options.idle_seconds
            note(f"{len(ids)} event streams open, gateway at {idle_cpu:.0%} CPU idle; linking")
            gateway_cpu = cpu_seconds(gateway.pid)
            started = time.monotonic()

            async def open_attempt(account_id: str) -> None:
                async with gate:
                    r = await http.post(f"/v1/accounts/{account_id}/link", json={"method": "qr"})
                    r.raise_for_status()

            await asyncio.gather(*(open_attempt(a) for a in ids))
            await clients.wait_codes(ids, patience)  # the codes come on the event streams
            link_seconds = time.monotonic() - started
            r = await http.get("/v1/accounts", params={"status": "linking"})
            open_attempts = len(r.json())
            # Fewer than N: the first attempts ran out of codes while the last were opened
            # (raise --time-scale); their scans open new attempts and count as rescans.
            note(f"{open_attempts} of {len(ids)} attempts open after {link_seconds:.1f} s")
            scanning, scanning_unix = time.monotonic(), time.time()
            scans = await scan_all(http, auth, ids, clients.codes, phones, options.scan_rate)
            scan_seconds = time.monotonic() - scanning
            await wait_connected(http, auth, options.accounts, patience)
            note(f"scanned in {scan_seconds:.1f} s, all connected; waiting for every event")

            events = [e for e in await committed_events(http, auth) if int(e["id"]) > baseline]
            await wait_webhooks(receiver, {int(e["id"]) for e in events}, patience)
            per_account: dict[str, int] = {}
            for event in events:
                per_account[event["account_id"]] = per_account.get(event["account_id"], 0) + 1
            sse, sse_cpu, reconnects = await clients.collect(per_account, patience)
            run_seconds = time.monotonic() - started
            gateway_cpu = cpu_seconds(gateway.pid) - gateway_cpu
    finally:
        await clients.close()
        gateway.stop()
        await asyncio.sleep(0.2)  # the receiver's connections see the gateway gone and end
        await receiver.stop()
        if created_database:
            await drop_database(database_url)
    client_cpu = time.process_time() - cpu_started
    hooks = [a for a in webhook_arrivals(receiver.bodies) if a[1] > baseline]
    if len(sse) < len(events):
        raise RuntimeError(f"{len(sse)} of {len(events)} events came on the SSE streams")
    scan_sse, commit_sse, scanning_sse = latencies(sse, scans.sent, scanning_unix)
    scan_commit = [unix(c) - scans.sent[a] for _, _, a, kind, c in sse if kind == "link.paired"]
    scan_hook, commit_hook, scanning_hook = latencies(hooks, scans.sent, scanning_unix)
    round_trip = statistics.quantiles(scans.round_trips, n=100, method="inclusive")
    return {
        "database": database_url.split(":", 1)[0].split("+")[0],
        "accounts": options.accounts,
        "scan_rate": options.scan_rate,
        "time_scale": options.time_scale,
        **figure("scan_to_commit", scan_commit),
        **figure("scan_to_sse", scan_sse),
        **figure("scan_to_webhook", scan_hook),
        **figure("commit_to_sse", commit_sse),
        **figure("commit_to_webhook", commit_hook),
        **figure("scanning_commit_to_sse", scanning_sse),
        **figure("scanning_commit_to_webhook", scanning_hook),
        "scan_request_p50_ms": round(round_trip[49] * 1000, 1),
        "scan_request_p99_ms": round(round_trip[98] * 1000, 1),
        "events_committed": len(events),
        "events_sse": len(sse),
        "events_webhook": len(hooks),
        "sse_reconnects": reconnects,
        "server_errors": transport.errors,
        "connected": options.accounts,
        "open_attempts": open_attempts,
        "rescans": scans.rescans,
        "link_seconds": round(link_seconds, 2),
        "scan_seconds": round(scan_seconds, 2),
        "run_seconds": round(run_seconds, 2),
        "sse_workers": options.sse_workers,
        "client_cpu_seconds": round(client_cpu, 2),
        "sse_client_cpu_seconds": round(sse_cpu, 2),
        "gateway_cpu_seconds": round(gateway_cpu, 2),
        "gateway_idle_cpu_percent": round(idle_cpu * 100, 1),
    }


def print_report(result: dict[str, object]) -> None:
    names = [k[: -len("_p50_ms")] for k in result if k.endswith("_p50_ms") and "_request" not in k]
    print(f"{'figure':<18} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'count':>7}")
    for name in names:
        cells = [result[f"{name}_{s}"] for s in ("p50_ms", "p99_ms", "max_ms", "count")]
        print(f"{name:<18} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {cells[3]:>7}")
    rest = {k: v for k, v in result.items() if not any(k.startswith(n + "_") for n in names)}
    width = max(len(k) for k in rest)
    print()
    for key, value in rest.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--scan-rate", type=float, default=50.0, help="scans per second")
    parser.add_argument("--time-scale", type=float, default=1.0, help="sim clock factor")
    parser.add_argument("--sse-workers", type=int, default=2, help="SSE client processes")
    parser.add_argument("--link-concurrency", type=int, default=32)
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="gateway CPU measured with idle streams"
    )
    parser.add_argument("--quick", action="store_true", help="50 accounts")
    args = parser.parse_args()
    options = Options(
        accounts=50 if args.quick else args.accounts,
        scan_rate=args.scan_rate,
        time_scale=args.time_scale,
        sse_workers=args.sse_workers,
        link_concurrency=args.link_concurrency,
        idle_seconds=args.idle_seconds,
        database_url=args.database_url,
    )
    print_report(asyncio.run(run(options)))


if __name__ == "__main__":
    main()
