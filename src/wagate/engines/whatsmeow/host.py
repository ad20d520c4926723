"""An engine host: a subprocess holding many whatsmeow clients
(``python -m wagate.engines.whatsmeow.host``).

neonize runs whatsmeow inside this process as a Go library, and some of its failures abort the
whole process (a Go panic on a call in the wrong state, "concurrent map writes" when clients
start at once). So clients live here, never in the gateway: the gateway talks to this process
over ``frames`` on stdin/stdout and restarts it when it dies. Inside, every call into Go takes
one lock and client starts are serialized; calls that Go would answer with a panic (Logout,
PairPhone, sends on a client Go no longer knows) are refused in Python first.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import logging
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from wagate.engines.base import Connected, Disconnected, EngineEvent, LoggedOut, PairFailed
from wagate.engines.whatsmeow import frames
from wagate.engines.whatsmeow.adapter import (
    TERMINAL,
    Mode,
    SessionAdapter,
    read_credentials,
)
from wagate.engines.wire import to_wire

log = logging.getLogger("wagate.engines.host")
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
Emit = Callable[[str, dict[str, Any]], None]


def _closed_popen(cmd: str, mode: str = "r", buffering: int = -1) -> io.StringIO:
    with subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, text=True) as proc:
        out, _ = proc.communicate()
    return io.StringIO(out)


def load_neonize() -> SimpleNamespace:
    """neonize's client and event classes; ImportError when the extra or libmagic is missing."""
    logging.getLogger("neonize").setLevel(logging.ERROR)
    # neonize's import reads `uname` through os.popen and never closes the pipe, which leaves
    # an unreaped child and a file for the garbage collector; read such pipes to the end here.
    real_popen = os.popen
    os.popen = _closed_popen  # type: ignore[assignment]
    try:
        from neonize import events as ev
        from neonize.client import ClientFactory, NewClient
        from neonize.utils import build_jid
    finally:
        os.popen = real_popen

    class HostClient(NewClient):  # type: ignore[misc]
        # neonize hands the QR flow's outcome only to this private callback (it prints it);
        # overriding the name-mangled method is the one way to observe it.
        on_status: Callable[[str], None] = staticmethod(lambda status: None)

        def _NewClient__onLoginStatus(self, uuid: int, status: int) -> None:  # noqa: N802
            self.on_status(ctypes.string_at(status).decode(errors="replace"))

    events = (ev.PairStatusEv, ev.ConnectedEv, ev.DisconnectedEv, ev.LoggedOutEv,
              ev.StreamReplacedEv, ev.TemporaryBanEv, ev.ClientOutdatedEv, ev.ConnectFailureEv,
              ev.MessageEv, ev.ReceiptEv)  # fmt: skip
    return SimpleNamespace(
        Client=HostClient, events=events, devices=ClientFactory.get_all_devices_from_db,
        build_jid=build_jid,
    )  # fmt: skip


@dataclass(eq=False)
class Session:
    """One client run: a link or a stored session. A new run gets a new Go-side id."""

    account_id: str
    uuid: str
    adapter: SessionAdapter
    store: Path
    phone: str | None = None
    jid: str | None = None
    client: Any = None
    closed: bool = False
    ready: bool = False  # a QR code shown (link) or connected (session)
    connected: bool = False
    in_go: bool = False  # Go registered the client: calls on it will not panic
    settled: threading.Event = field(default_factory=threading.Event)


class Host:
    """Sessions by account id, one Go lock, one thread that starts clients one at a time."""

    def __init__(
        self,
        neonize: SimpleNamespace,
        data_dir: Path,
        emit: Emit,
        *,
        connect_timeout: float = 30.0,
        settle_grace: float = 2.0,
    ) -> None:
        self.nz = neonize
        self.data_dir = data_dir
        self._emit_wire = emit
        self.connect_timeout = connect_timeout
        self.settle_grace = settle_grace
        self.sessions: dict[str, Session] = {}
        self.go = threading.RLock()
        self._starts: queue.Queue[Session | None] = queue.Queue()
        self._runs = 0
        self._starter = threading.Thread(target=self._start_loop, name="starter", daemon=True)
        self._starter.start()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="op")

    # -- sessions -------------------------------------------------------------------------------

    def store_of(self, account_id: str) -> tuple[str, Path]:
        if not _ACCOUNT.fullmatch(account_id):
            raise ValueError("account id not usable as a store name")
        name = f"whatsmeow/{account_id}.db"
        return name, self.data_dir / name

    def new_session(self, account_id: str, mode: Mode, *, phone: str | None = None) -> Session:
        self.close_session(account_id)
        name, path = self.store_of(account_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._runs += 1
        session = Session(account_id, f"{account_id}#{self._runs}", SessionAdapter(mode, name),
                          path, phone=phone)  # fmt: skip
        self.sessions[account_id] = session
        return session

    def bind(self, session: Session) -> Any:
        """A neonize client whose every report lands in ``session``'s adapter."""
        client = self.nz.Client(str(session.store), uuid=session.uuid)
        adapter = session.adapter
        client.on_status = lambda status: self._report(session, adapter.login_status(status))
        client.event.qr(lambda _c, data: self._on_qr(session, data))
        for kind in self.nz.events:
            client.event(kind)(lambda _c, message: self._on_event(session, message))
        session.client = client
        return client

    def close_session(self, account_id: str, *, delete_store: bool = False) -> Session | None:
        session = self.sessions.pop(account_id, None)
        if session is not None:
            self._stop(session)
        if delete_store:
            _, path = self.store_of(account_id)
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return session

    def _stop(self, session: Session) -> None:
        session.closed = True
        session.settled.set()
        if session.client is not None:
            with self.go:  # Stop is safe for any id: Go looks it up first
                session.client.stop()
            session.in_go = False

    # -- reports from Go (on Go's threads) -----------------------------------------------------

    def _on_qr(self, session: Session, data: bytes) -> None:
        session.in_go = True
        session.settled.set()
        if session.adapter.mode == "code" and not session.ready and session.phone:
            self.pool.submit(self._pair_phone, session)
        session.ready = True
        self._report(session, session.adapter.qr(data.decode(errors="replace")))

    def _on_event(self, session: Session, message: Any) -> None:
        session.in_go = True
        session.settled.set()
        self._report(session, session.adapter.event(message))

    def _report(self, session: Session, events: list[EngineEvent]) -> None:
        if session.closed:
            return  # a run we stopped: its late reports must not reach the account
        for event in events:
            if isinstance(event, Connected):
                session.ready = session.connected = True
            self.emit(session.account_id, event)
            if isinstance(event, TERMINAL):
                self._finish(session)
                return

    def emit(self, account_id: str, event: EngineEvent) -> None:
        self._emit_wire(account_id, to_wire(event))

    def _finish(self, session: Session) -> None:
        session.closed = True
        if self.sessions.get(session.account_id) is session:
            del self.sessions[session.account_id]
        # Stopping from inside a Go callback would wait on the goroutine that is calling us.
        self.pool.submit(self._stop, session)

    def _pair_phone(self, session: Session) -> None:
        try:
            with self.go:
                code = session.client.PairPhone(session.phone, show_push_notification=True)
        except Exception as exc:  # neonize raises PairPhoneError with the server's words
            log.warning("pairing code refused", extra={"account_id": session.account_id,
                                                       "error": type(exc).__name__})  # fmt: skip
            self._report(session, [PairFailed("pair_code_rejected")])
            return
        self._report(session, session.adapter.pair_code(str(code)))

    # -- starting clients, one at a time --------------------------------------------------------

    def start(self, session: Session) -> None:
        self._starts.put(session)

    def _start_loop(self) -> None:
        while (session := self._starts.get()) is not None:
            if session.closed:
                continue
            timer = threading.Timer(self.connect_timeout, self._timed_out, args=(session,))
            timer.daemon = True
            timer.start()
            with self.go:
                runner = threading.Thread(target=self._run, args=(session,), daemon=True,
                                          name=f"client:{session.uuid}")  # fmt: skip
                runner.start()
                # Go writes its global maps while a client starts; the dial after that may
                # block for a minute, so the next start waits only for a report or the grace.
                session.settled.wait(self.settle_grace)

    def _run(self, session: Session) -> None:
        try:
            client = session.client or self.bind(session)
            client.connect()
        except Exception as exc:  # NeonizeError carries whatsmeow's error text
            if not session.closed:
                log.info("client could not connect", extra={"account_id": session.account_id})
                self._report(session, session.adapter.connect_error(str(exc)))
                self._finish(session)
        finally:
            session.in_go = False
            session.settled.set()

    def _timed_out(self, session: Session) -> None:
        if session.closed or session.ready:
            return
        self._report(session, session.adapter.connect_error("timed out"))
        self._finish(session)

    def shutdown(self) -> None:
        for account_id in list(self.sessions):
            self.close_session(account_id)
        self._starts.put(None)
        self.pool.shutdown(wait=False, cancel_futures=True)


def stored_session(host: Host, account_id: str, store: str) -> Session | None:
    """A session for stored credentials, or None after reporting them missing."""
    name, path = host.store_of(account_id)
    if store != name or not path.exists():
        host.emit(account_id, LoggedOut("credentials_missing"))
        return None
    with host.go:
        devices = host.nz.devices(str(path))
    if not devices:
        host.emit(account_id, LoggedOut("credentials_missing"))
        return None
    return host.new_session(account_id, "session")


class Ops:
    """The requests a host answers. Session changes run in arrival order on the reading thread;
    what waits on the network (logout, sends) runs in the pool and replies from there."""

    def __init__(self, host: Host, writer: frames.SyncWriter) -> None:
        self.host = host
        self.writer = writer

    def handle(self, frame: frames.Frame) -> None:
        rid = frame.get("id")
        try:
            method = getattr(self, f"op_{frame.get('op')}", None)
            if method is None:
                raise ValueError(f"unknown op {frame.get('op')!r}")
            result = method(str(frame.get("account", "")), frame)
        except Exception as exc:  # the gateway gets the failure; the host keeps serving
            self.writer.write({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return
        if result is not _LATER:
            self.writer.write({"id": rid, "ok": True, "result": result})

    def op_ping(self, _account: str, _frame: frames.Frame) -> Any:
        return {"pid": os.getpid(), "sessions": sorted(self.host.sessions)}

    def op_link(self, account: str, frame: frames.Frame) -> Any:
        host = self.host
        host.close_session(account, delete_store=True)  # a new link starts from a blank device
        mode: Mode = "code" if frame.get("method") == "code" else "qr"
        host.start(host.new_session(account, mode, phone=frame.get("phone")))
        return None

    def op_connect(self, account: str, frame: frames.Frame) -> Any:
        store, jid = read_credentials(str(frame.get("credentials", "")).encode())
        session = stored_session(self.host, account, store)
        if session is not None:
            session.jid = jid
            self.host.start(session)
        return None

    def op_cancel_link(self, account: str, _frame: frames.Frame) -> Any:
        self.host.close_session(account, delete_store=True)
        return None

    def op_disconnect(self, account: str, _frame: frames.Frame) -> Any:
        if self.host.close_session(account) is not None:
            self.host.emit(account, Disconnected("stopped", will_retry=False))
        return None

    def op_logout(self, account: str, _frame: frames.Frame) -> Any:
        session = self.host.sessions.pop(account, None)
        self.host.pool.submit(self._logout, account, session)
        return None

    def _logout(self, account: str, session: Session | None) -> None:
        host = self.host
        if session is not None and session.connected and session.in_go:
            try:
                with host.go:
                    session.client.logout()
            except Exception:  # offline: the server forgets the device on its own later
                log.warning("logout not confirmed by the server", extra={"account_id": account})
        if session is not None:
            host._stop(session)
        host.close_session(account, delete_store=True)
        if session is not None:
            host.emit(account, LoggedOut("logged_out"))

    def op_send_text(self, account: str, frame: frames.Frame) -> Any:
        session = self.host.sessions.get(account)
        if session is None or not (session.connected and session.in_go):
            raise RuntimeError("the account's session is not connected")
        self.host.pool.submit(self._send, frame, session)
        return _LATER

    def _send(self, frame: frames.Frame, session: Session) -> None:
        rid = frame.get("id")
        user, _, server = str(frame["to"]).partition("@")
        try:
            with self.host.go:
                jid = self.host.nz.build_jid(user, server or "s.whatsapp.net")
                sent = session.client.send_message(jid, str(frame["text"]))
        except Exception as exc:
            self.writer.write({"id": rid, "ok": False, "error": type(exc).__name__})
            return
        self.writer.write({"id": rid, "ok": True, "result": str(sent.ID)})


_LATER = object()


def serve(writer: frames.SyncWriter, stdin: Any, args: argparse.Namespace) -> int:
    """Say hello, then answer requests until stdin closes or ``shutdown`` arrives."""
    try:
        nz = load_neonize()
    except Exception as exc:  # missing extra, missing libmagic: the gateway says how to fix it
        writer.write({"hello": False, "error": f"{type(exc).__name__}: {exc}"})
        return 3

    def emit(account_id: str, wire: dict[str, Any]) -> None:
        try:
            writer.write({"account": account_id, "event": wire})
        except (OSError, ValueError):  # the gateway's end of the pipe is gone: so is our purpose
            os._exit(0)

    host = Host(nz, args.data_dir, emit, connect_timeout=args.connect_timeout,
                settle_grace=args.settle_grace)  # fmt: skip
    ops = Ops(host, writer)
    writer.write({"hello": True, "pid": os.getpid()})
    try:
        return _answer(host, ops, writer, stdin)
    except (BrokenPipeError, ValueError):  # the gateway went away mid-reply
        return 0
    finally:
        host.shutdown()


def _answer(host: Host, ops: Ops, writer: frames.SyncWriter, stdin: Any) -> int:
    while (frame := frames.read_sync(stdin)) is not None:
        if frame.get("op") == "shutdown":
            host.shutdown()
            writer.write({"id": frame.get("id"), "ok": True, "result": None})
            break
        ops.handle(frame)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wagate.engines.whatsmeow.host")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--settle-grace", type=float, default=2.0)
    args = parser.parse_args(argv)
    # Frames own the real stdout; anything else printing (neonize prints, Go's fmt.Println)
    # goes to stderr instead of corrupting the stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("WAGATE_LOG_LEVEL", "INFO"),
        format="%(asctime)s host[%(process)d] %(levelname)s %(name)s %(message)s",
    )
    code = serve(frames.SyncWriter(out), sys.stdin.buffer, args)
    sys.stderr.flush()
    # neonize runs each client on a non-daemon thread that a stuck dial keeps alive for up to a
    # minute; the sessions are stopped, so leave without waiting for those threads.
    os._exit(code)


if __name__ == "__main__":
    main()
