"""Memory of one whatsmeow engine host holding many idle clients.

Starts ``python -m wagate.engines.whatsmeow.host`` as the gateway does, opens N sessions from stored
devices (one whatsmeow sqlite store per account, as a finished pairing leaves it), and reads the
host's resident memory from /proc at steps up to N. Nothing here can reach WhatsApp, so every
client dials through a local proxy that accepts and never answers: each session holds its Go
client, its opened store and a pending connection — a session at rest, minus what a live
connection to WhatsApp adds (noise buffers, app-state sync). Prints a table, then one JSON line.

    python bench/host_memory.py            # 200 clients, steps 0/50/100/150/200
    python bench/host_memory.py --quick    # 20 clients
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from wagate.engines.whatsmeow import frames
from wagate.engines.whatsmeow.adapter import credentials_blob
from wagate.engines.whatsmeow.host import load_neonize


def silent_proxy() -> tuple[str, list[socket.socket]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    held: list[socket.socket] = [server]

    def accept() -> None:
        while True:
            held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", held


def plant(devices: Any, store: Path, jid: str) -> None:
    store.parent.mkdir(parents=True, exist_ok=True)
    devices(str(store))  # whatsmeow creates its schema
    with sqlite3.connect(store) as db:
        db.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key,"
            " signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details,"
            " adv_account_sig, adv_account_sig_key, adv_device_sig)"
            " VALUES (?, 1, ?, ?, ?, 1, ?, ?, x'', ?, ?, ?)",
            (jid, *(os.urandom(n) for n in (32, 32, 32, 64, 32, 64, 32, 64))),
        )


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) // 1024  # MiB
        elif key == "Threads":
            values[key] = int(rest)
    return values


class Host:
    def __init__(self, data_dir: Path, proxy: str) -> None:
        env = {**os.environ, "HTTPS_PROXY": proxy, "WAGATE_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wagate.engines.whatsmeow.host", "--data-dir", str(data_dir),
             "--connect-timeout", "86400", "--settle-grace", "0.05"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        hello = frames.read_sync(self.stdout)
        assert hello and hello.get("hello"), hello
        self.pid = int(hello["pid"])
        self.ids = 0

    def call(self, op: str, **args: Any) -> Any:
        self.ids += 1
        self.stdin.write(frames.encode({"id": self.ids, "op": op, **args}))
        self.stdin.flush()
        while True:
            frame = frames.read_sync(self.stdout)
            assert frame is not None, "the host died"
            if frame.get("id") == self.ids:
                assert frame["ok"], frame
                return frame["result"]
            assert "event" in frame
            if frame["event"]["type"] != "ConnectFailed":
                continue
            raise RuntimeError(f"a session failed: {frame['event']}")

    def close(self) -> None:
        # Killed, not shut down: every client is still dialing the silent proxy, and a stop
        # does not cancel a dial (it ends after whatsmeow's own 60 s). Nothing is measured here.
        self.proc.kill()
        self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 clients")
    args = parser.parse_args()
    total = 20 if args.quick else args.clients
    steps = sorted({0, *range(total // 4 or 1, total + 1, total // 4 or 1), total})
    devices = load_neonize().devices
    proxy, held = silent_proxy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        accounts = [str(uuid.uuid4()) for _ in range(total)]
        for n, account in enumerate(accounts):
            plant(
                devices, data_dir / "whatsmeow" / f"{account}.db", f"5511{n:09d}:2@s.whatsapp.net"
            )
        host = Host(data_dir, proxy)
        opened = 0
        started = time.monotonic()
        for step in steps:
            for account in accounts[opened:step]:
                blob = credentials_blob(f"whatsmeow/{account}.db", "x@s.whatsapp.net").decode()
                host.call("connect", account=account, credentials=blob)
            opened = step
            while len(host.call("ping")["sessions"]) < step:
                time.sleep(0.05)
            time.sleep(1.0)  # let the started clients reach their dial
            rows.append({"clients": step, **proc_status(host.pid)})
        seconds = round(time.monotonic() - started, 1)
        host.close()
    for conn in held:
        conn.close()
    base, top = rows[0], rows[-1]
    per_client = (top["VmRSS"] - base["VmRSS"]) / max(1, top["clients"])
    print(f"{'clients':>8} {'RSS MiB':>8} {'peak MiB':>9} {'threads':>8}")
    for row in rows:
        print(f"{row['clients']:>8} {row['VmRSS']:>8} {row['VmHWM']:>9} {row['Threads']:>8}")
    print(f"per client: {per_client:.2f} MiB; {seconds} s to open {total}")
    result = {"clients": total, "steps": rows, "rss_mib_per_client": round(per_client, 2),
              "seconds": seconds}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
