"""Real ``wagate serve`` processes for tests that kill and restart the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import ADMIN_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, timeout: float, what: str
) -> None:
    """Until ``url`` answers 200; an AssertionError with the process's log if it exits first or
    is not ready within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited early:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} not ready in {timeout} s:\n{log.read_text()}")


@dataclass
class Server:
    """One gateway process; ``start`` again after ``kill``/``terminate`` on the same data."""

    database_url: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "WAGATE_DATABASE_URL": self.database_url,
            "WAGATE_DATA_DIR": str(self.data_dir),
            "WAGATE_ADMIN_KEY": ADMIN_KEY,
            "WAGATE_SIM_TIME_SCALE": "0.01",
            "WAGATE_PORT": str(self.port),
            "WAGATE_LOG_FORMAT": "json",
            **self.env,
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        runs = len(list(self.data_dir.glob("serve-*.log")))
        self.log = self.data_dir / f"serve-{runs}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wagate", "serve", "--engine", "sim"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.process, f"{self.url}/readyz", self.log, timeout, "gateway")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> float:
        """SIGTERM; returns the seconds until the process exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        return time.monotonic() - started

    def pause(self) -> None:
        """SIGSTOP: the process stands still (a long GC pause, a frozen VM) until ``resume``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class SimServerProcess:
    """One ``wagate sim-server`` process: the simulated WhatsApp the nodes of a cluster share."""

    log_dir: Path
    time_scale: float = 0.2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "WAGATE_SIM_TIME_SCALE": str(self.time_scale)}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / "sim-server.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wagate", "sim-server", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.process, f"{self.url}/health", log, timeout, "sim-server")

    def stats(self) -> dict[str, int]:
        r = httpx.get(f"{self.url}/stats", timeout=5.0)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
