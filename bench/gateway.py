"""A real ``wagate serve`` process for benchmarks: start, measure RSS, kill, restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN_KEY = "wg_bench_admin_key_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, timeout: float, what: str
) -> None:
    """Until ``url`` answers 200; RuntimeError (naming the log) if the process exits first or
    is not ready in ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: see {log}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up: see {log}")


def print_result(result: dict[str, object]) -> None:
    """The result as a table, then as one JSON object on the last line."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


class Gateway:
    """One gateway process on 127.0.0.1; ``start`` again after ``kill`` keeps the data."""

    def __init__(self, workdir: Path, database_url: str | None = None, **env: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "WAGATE_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            "WAGATE_DATA_DIR": str(workdir / "data"),
            "WAGATE_ADMIN_KEY": ADMIN_KEY,
            "WAGATE_PORT": str(self.port),
            "WAGATE_LOG_LEVEL": "WARNING",
            # One workspace links thousands of accounts here: lift the link rate limits.
            "WAGATE_LINK_RATE_PER_ACCOUNT": "100000/h",
            "WAGATE_LINK_RATE_PER_WORKSPACE": "1000000/h",
            # The webhook receivers of the benchmarks listen on 127.0.0.1.
            "WAGATE_WEBHOOK_ALLOW_PRIVATE": "true",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, timeout: float = 60.0, ready: str = "/healthz") -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "serve.log").open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wagate", "serve", "--engine", "sim"],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        wait_ready(self.process, self.url + ready, self.workdir / "serve.log", timeout, "gateway")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def workspace_key(http: httpx.AsyncClient, webhook_url: str | None = None) -> str:
    """Create the benchmark's workspace (webhooks to ``webhook_url`` when given); returns its
    API key."""
    body: dict[str, str] = {"name": "bench"}
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    response = await http.post("/v1/workspaces", json=body, headers=bearer(ADMIN_KEY))
    response.raise_for_status()
    key: str = response.json()["api_key"]
    return key
