"""Helpers for tests of the whatsmeow engine: neonize present, a silent host, a stored device."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def require_neonize() -> None:
    """Skip without the ``whatsmeow`` extra (or libmagic); fail instead under
    ``WAGATE_REQUIRE_SERVICES=1``, like a missing database service."""
    missing = None
    if importlib.util.find_spec("neonize") is None:
        missing = "neonize is not installed (pip install '.[whatsmeow]')"
    elif ctypes.util.find_library("magic") is None:
        missing = "libmagic is missing (apt-get install libmagic1)"
    if missing is None:
        return
    if os.environ.get("WAGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{missing} but WAGATE_REQUIRE_SERVICES=1")
    pytest.skip(missing)


@contextmanager
def silent_host() -> Iterator[str]:
    """A TCP server that accepts and never answers: a dial through it hangs like one to a
    blackholed WhatsApp server. Yields its ``http://127.0.0.1:port`` address."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def plant_device(store: Path, jid: str = "5511999990001:7@s.whatsapp.net") -> None:
    """Write a linked device into a whatsmeow store, as a finished pairing leaves it.

    The keys are random (nothing here can pair with WhatsApp): whatsmeow loads the device and
    tries to connect with it, which is what restoring a session does. whatsmeow creates the
    schema itself; this only adds the row.
    """
    from wagate.engines.whatsmeow.host import load_neonize

    store.parent.mkdir(parents=True, exist_ok=True)
    load_neonize().devices(str(store))
    with sqlite3.connect(store) as db:
        db.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key,"
            " signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details,"
            " adv_account_sig, adv_account_sig_key, adv_device_sig)"
            " VALUES (?, 1, ?, ?, ?, 1, ?, ?, x'', ?, ?, ?)",
            (jid, *(os.urandom(n) for n in (32, 32, 32, 64, 32, 64, 32, 64))),
        )
