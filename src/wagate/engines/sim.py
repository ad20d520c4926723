"""The simulator: an in-process WhatsApp linking server, its phones, and the engine using it.

Like httpx's MockTransport it ships inside the package so tests and demos run the real gateway.
QR lifecycle as WhatsApp's: six codes, the first valid 60 s and the next five 20 s each, then
``LinkExpired``. ``time_scale`` multiplies every duration (0.01 turns 160 s into 1.6 s).
A phone scans the QR *string* the API handed out, through ``SimServer.scan``.

One ``SimServer`` may serve several engines (``wagate sim-server`` gives each gateway node its
own, over a WebSocket: ``wagate.engines.simserver``). Like WhatsApp, it keeps one connection per
linked device: when a device connects again, the newer connection wins and the older one's engine
gets ``Replaced``. ``SimServer.stats`` counts what a cluster test must prove never happened: two
connections of one device at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from wagate.core.backoff import Backoff
from wagate.core.states import LinkMethod
from wagate.core.tasks import BackgroundTasks
from wagate.engines.base import (
    Connected,
    ConnectFailed,
    CredentialsUpdated,
    Disconnected,
    EngineEvent,
    EngineSink,
    LinkExpired,
    LoggedOut,
    MessageReceived,
    MessageStatus,
    PairCode,
    Paired,
    PairFailed,
    QrCode,
    Reopen,
    Replaced,
)
from wagate.errors import EngineUnavailable

log = logging.getLogger("wagate.engines.sim")

QR_LIFETIMES: tuple[float, ...] = (60.0, 20.0, 20.0, 20.0, 20.0, 20.0)
PAIR_CODE_LIFETIME = sum(QR_LIFETIMES)
PAIR_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
PAIRING_DELAY = 1.0  # sim seconds between the scan and the session being ready
RECONNECT = Backoff(min=1.0, max=60.0, factor=2.0, jitter=0.2)
_RETIRED_MEMORY = 10_000


class ScanResult(StrEnum):
    """What the phone shows after scanning a code or typing a pairing code."""

    LINKED = "linked"  # the device is being linked
    EXPIRED_CODE = "expired_code"  # the code was rotated away or its attempt ended
    TRY_AGAIN_LATER = "try_again_later"  # the server is unavailable
    INVALID_CODE = "invalid_code"  # never issued
    WRONG_PHONE = "wrong_phone"  # a pairing code entered on another number


@dataclass(frozen=True)
class Faults:
    """Faults to inject, globally or per phone; a phone's own faults win over the global ones."""

    outage: bool = False  # the server answers "try again later"
    expire_scans: bool = False  # every scan is answered as of an expired code
    logout_after_pair: bool = False  # the phone logs the device out right after pairing
    slow_pairing: float = 0.0  # extra sim seconds between Paired and Connected
    flapping: bool = False  # the connection drops a few sim seconds after every connect


@dataclass
class _Link:
    account_id: str
    method: LinkMethod
    phone: str | None
    codes: list[str] = field(default_factory=list)
    # Set by the server: ("linked", phone) or ("failed", reason).
    outcome: asyncio.Future[tuple[str, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Session:
    account_id: str
    task: asyncio.Task[None] | None = None
    link: _Link | None = None
    phone: str | None = None
    jid: str | None = None  # the linked device this session speaks for
    connected: bool = False


@dataclass(frozen=True)
class SimStats:
    """``devices``: linked devices not logged out; ``connected``: devices with a live connection
    now; ``peak_connections_per_device``: the most connections one device ever had at once;
    ``replaced_total``: connections closed because the same device connected again."""

    devices: int
    connected: int
    peak_connections_per_device: int
    replaced_total: int


class SimServer:
    """The simulated WhatsApp side: issued codes, linked devices, phones and faults."""

    def __init__(self, clock_scale: float) -> None:
        self.scale = clock_scale
        self.faults = Faults()
        self._phone_faults: dict[str, Faults] = {}
        self._codes: dict[str, _Link] = {}
        self._pair_codes: dict[str, _Link] = {}
        self._retired: OrderedDict[str, None] = OrderedDict()
        self.engines: list[SimEngine] = []
        # Linked devices (jid → phone), and each device's live connections: (engine, account).
        self._devices: dict[str, str] = {}
        self._live: dict[str, list[tuple[SimEngine, str]]] = {}
        self._peak = 0
        self._replaced = 0
        # What reaches a device while it has no connection (receipts of what it sent), handed
        # to its next connection as WhatsApp's servers do; and the tasks that send receipts.
        self._waiting: dict[str, list[EngineEvent]] = {}
        self.tasks = BackgroundTasks("sim-server")

    def now(self) -> datetime:
        return datetime.now(UTC)

    def seconds(self, sim_seconds: float) -> float:
        """Real seconds for a duration in simulated seconds."""
        return sim_seconds * self.scale

    def faults_for(self, phone: str | None) -> Faults:
        if phone is not None and phone in self._phone_faults:
            return self._phone_faults[phone]
        return self.faults

    def set_faults(self, phone: str | None = None, **changes: bool | float) -> Faults:
        """Switch faults on or off, for one phone or (``phone=None``) globally."""
        known = {f.name for f in fields(Faults)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        updated = replace(self.faults_for(phone), **changes)  # type: ignore[arg-type]
        if phone is None:
            self.faults = updated
        else:
            self._phone_faults[phone] = updated
        return updated

    def issue_qr(self, link: _Link) -> str:
        # The shape of WhatsApp's QR payload: ref, noise key, identity key, adv secret.
        parts = [f"2@{secrets.token_urlsafe(48)}"] + [
            base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(3)
        ]
        code = ",".join(parts)
        if link.codes:
            self._retire(link.codes[-1])
        link.codes.append(code)
        self._codes[code] = link
        return code

    def issue_pair_code(self, link: _Link) -> str:
        raw = "".join(secrets.choice(PAIR_ALPHABET) for _ in range(8))
        code = f"{raw[:4]}-{raw[4:]}"
        link.codes.append(code)
        self._pair_codes[code] = link
        return code

    def end_link(self, link: _Link) -> None:
        for code in link.codes:
            self._retire(code)

    def _retire(self, code: str) -> None:
        self._codes.pop(code, None)
        self._pair_codes.pop(code, None)
        self._retired[code] = None
        while len(self._retired) > _RETIRED_MEMORY:
            self._retired.popitem(last=False)

    def scan(self, code: str, phone: str) -> ScanResult:
        """A phone scans a QR code string."""
        link = self._codes.get(code)
        if link is None:
            return ScanResult.EXPIRED_CODE if code in self._retired else ScanResult.INVALID_CODE
        return self._accept(link, phone)

    def enter_pair_code(self, code: str, phone: str) -> ScanResult:
        """A phone's user types a pairing code."""
        link = self._pair_codes.get(code.strip().upper())
        if link is None:
            return ScanResult.EXPIRED_CODE if code in self._retired else ScanResult.INVALID_CODE
        if link.phone != phone:
            return ScanResult.WRONG_PHONE
        return self._accept(link, phone)

    def _accept(self, link: _Link, phone: str) -> ScanResult:
        faults = self.faults_for(phone)
        if faults.expire_scans:
            return ScanResult.EXPIRED_CODE
        if link.outcome.done():
            return ScanResult.EXPIRED_CODE
        if faults.outage:
            link.outcome.set_result(("failed", "server_unavailable"))
            return ScanResult.TRY_AGAIN_LATER
        link.outcome.set_result(("linked", phone))
        return ScanResult.LINKED

    def phone_logout(self, phone: str, only: Collection[str] | None = None) -> int:
        """The phone removes its linked devices (Settings → Linked devices → Log out).
        ``only``: the account ids that may be reached (the caller's workspace); None for all."""
        return sum(e.drop_phone(phone, logout=True, only=only) for e in self._engines())

    def network_flap(self, phone: str, only: Collection[str] | None = None) -> int:
        """The connection of every device linked to ``phone`` drops once."""
        return sum(e.drop_phone(phone, logout=False, only=only) for e in self._engines())

    def incoming(
        self,
        phone_from: str,
        to_phone: str,
        text: str,
        only: Collection[str] | None = None,
        count: int = 1,
    ) -> int:
        """``phone_from`` sends ``text`` ``count`` times to the number ``to_phone``: every device
        linked to it receives the messages. Returns how many devices did."""
        engines = self._engines()
        return sum(e.receive(phone_from, to_phone, text, only, count) for e in engines)

    def _engines(self) -> list[SimEngine]:
        if not self.engines:
            raise EngineUnavailable("the simulator has no engine attached")
        return list(self.engines)

    # -- devices and their connections -----------------------------------------------------------

    def device_linked(self, jid: str, phone: str) -> None:
        self._devices[jid] = phone

    def device_logged_out(self, jid: str) -> None:
        self._devices.pop(jid, None)
        self._waiting.pop(jid, None)

    def open_connection(self, jid: str, engine: SimEngine, account_id: str) -> None:
        """A device connects; the newer connection wins and every older one gets ``Replaced``."""
        older = [c for c in self._live.get(jid, []) if c != (engine, account_id)]
        self._peak = max(self._peak, len(older) + 1)
        self._live[jid] = [(engine, account_id)]
        for other, other_account in older:
            self._replaced += 1
            other.replaced(other_account)

    def to_device(self, jid: str, event: EngineEvent) -> None:
        """``event`` reaches the device's live connection, wherever it is, or waits for it."""
        live = self._live.get(jid)
        if live:
            engine, account_id = live[-1]
            engine.deliver(account_id, event)
        elif jid in self._devices:
            waiting = self._waiting.setdefault(jid, [])
            if len(waiting) < _RETIRED_MEMORY:
                waiting.append(event)

    def flush(self, jid: str) -> None:
        """A device just connected: what waited for it arrives now."""
        for event in self._waiting.pop(jid, []):
            self.to_device(jid, event)

    def close_connection(self, jid: str, engine: SimEngine, account_id: str) -> None:
        live = [c for c in self._live.get(jid, []) if c != (engine, account_id)]
        if live:
            self._live[jid] = live
        else:
            self._live.pop(jid, None)

    def stats(self) -> SimStats:
        return SimStats(
            devices=len(self._devices),
            connected=len(self._live),
            peak_connections_per_device=self._peak,
            replaced_total=self._replaced,
        )


class SimEngine:
    """The engine side of the simulator: one ``_Session`` per account."""

    name = "sim"

    def __init__(self, server: SimServer) -> None:
        self.server = server
        server.engines.append(self)
        self._sink: EngineSink | None = None
        self._sessions: dict[str, _Session] = {}
        self._tasks = BackgroundTasks("sim")

    async def start(self, sink: EngineSink, reopen: Reopen | None = None) -> None:
        # The simulated server never loses a session: its own reconnects keep the credentials.
        self._sink = sink

    async def close(self) -> None:
        """Every connection of this engine ends (a gateway going away); credentials stay valid."""
        await self._tasks.close()
        for session in self._sessions.values():
            self._offline(session)
        self._sessions.clear()
        self._sink = None
        if self in self.server.engines:
            self.server.engines.remove(self)
        if not self.server.engines:
            await self.server.tasks.close()  # nobody left to receive a receipt

    def healthy(self) -> bool:
        return self._sink is not None

    def _emit(self, account_id: str, event: EngineEvent) -> None:
        if self._sink is not None:
            self._sink(account_id, event)

    def deliver(self, account_id: str, event: EngineEvent) -> None:
        """The server hands this engine an event for one of its connections."""
        self._emit(account_id, event)

    def _replace_task(self, account_id: str, coro_name: str, coro: object) -> _Session:
        session = self._sessions.setdefault(account_id, _Session(account_id))
        self._offline(session)  # a session opened again closes its connection first
        if session.task is not None and not session.task.done():
            session.task.cancel()
        if session.link is not None:
            self.server.end_link(session.link)
            session.link = None
        session.task = self._tasks.spawn(coro, name=f"{coro_name}:{account_id}")  # type: ignore[arg-type]
        return session

    async def link(self, account_id: str, method: LinkMethod, phone: str | None) -> None:
        if self._sink is None:
            raise EngineUnavailable("the simulator is not running")
        self._replace_task(account_id, "link", self._run_link(account_id, method, phone))

    async def cancel_link(self, account_id: str) -> None:
        session = self._sessions.pop(account_id, None)
        if session is not None:
            self._stop(session)

    def _stop(self, session: _Session) -> None:
        if session.task is not None and not session.task.done():
            session.task.cancel()
        if session.link is not None:
            self.server.end_link(session.link)
        self._offline(session)

    def _offline(self, session: _Session) -> None:
        if session.connected and session.jid is not None:
            self.server.close_connection(session.jid, self, session.account_id)
        session.connected = False

    def replaced(self, account_id: str) -> None:
        """The server closed this session's connection: its device connected elsewhere."""
        session = self._sessions.pop(account_id, None)
        if session is None:
            return
        session.connected = False  # the server has already forgotten this connection
        self._stop(session)
        self._emit(account_id, Replaced())

    async def connect(self, account_id: str, credentials: bytes) -> None:
        try:
            state = json.loads(credentials)
            phone = str(state["phone"])
            jid = str(state.get("jid") or f"{phone}@s.whatsapp.net")
        except (ValueError, KeyError, TypeError):
            # Engine-readable but meaningless credentials: the server would refuse them.
            self._emit(account_id, LoggedOut("credentials_rejected"))
            return
        session = self._replace_task(account_id, "connect", self._run_connect(account_id, phone))
        session.jid = jid

    async def disconnect(self, account_id: str) -> None:
        session = self._sessions.pop(account_id, None)
        if session is not None:
            self._stop(session)
            self._emit(account_id, Disconnected("stopped", will_retry=False))

    async def logout(self, account_id: str) -> None:
        session = self._sessions.pop(account_id, None)
        if session is not None:
            self._stop(session)
            if session.jid is not None:
                self.server.device_logged_out(session.jid)
            self._emit(account_id, LoggedOut("logged_out"))

    async def send_text(self, account_id: str, to: str, text: str) -> str:
        session = self._sessions.get(account_id)
        if session is None or not session.connected or session.jid is None:
            raise EngineUnavailable("the account's session is not connected")
        wa_id = "3EB0" + secrets.token_hex(8).upper()
        self.server.tasks.spawn(self._acknowledge(session.jid, wa_id), name=f"ack:{account_id}")
        return wa_id

    def receive(
        self,
        phone_from: str,
        to_phone: str,
        text: str,
        only: Collection[str] | None = None,
        count: int = 1,
    ) -> int:
        sessions = self._linked_to(to_phone, only)
        chat = f"{phone_from}@s.whatsapp.net"
        for session in sessions:
            for _ in range(count):
                wa_id = "3EB0" + secrets.token_hex(8).upper()
                event = MessageReceived(wa_id, chat, chat, text, self.server.now())
                self._emit(session.account_id, event)
        return len(sessions)

    async def _acknowledge(self, jid: str, wa_id: str) -> None:
        """The receipts of a sent message reach the device that sent it, on whichever
        connection it has by then (another node's, after a handoff)."""
        for status in ("sent", "delivered", "read"):
            await asyncio.sleep(self.server.seconds(0.5))
            self.server.to_device(jid, MessageStatus(wa_id, status))

    async def _run_link(self, account_id: str, method: LinkMethod, phone: str | None) -> None:
        if self.server.faults_for(phone).outage:
            self._emit(account_id, ConnectFailed("server_unavailable", retryable=True))
            return
        link = _Link(account_id, method, phone)
        self._sessions[account_id].link = link
        lifetimes = QR_LIFETIMES if method is LinkMethod.QR else (PAIR_CODE_LIFETIME,)
        for index, lifetime in enumerate(lifetimes):
            expires_at = self.server.now() + timedelta(seconds=self.server.seconds(lifetime))
            if method is LinkMethod.QR:
                self._emit(account_id, QrCode(self.server.issue_qr(link), index, expires_at))
            else:
                self._emit(account_id, PairCode(self.server.issue_pair_code(link), expires_at))
            try:
                await asyncio.wait_for(asyncio.shield(link.outcome), self.server.seconds(lifetime))
                break
            except TimeoutError:
                continue
        self.server.end_link(link)
        self._sessions[account_id].link = None
        if not link.outcome.done():
            link.outcome.cancel()
            self._emit(account_id, LinkExpired())
            return
        result, detail = link.outcome.result()
        if result == "failed":
            self._emit(account_id, PairFailed(detail))
            return
        await self._establish(account_id, detail)

    async def _establish(self, account_id: str, phone: str) -> None:
        device = secrets.randbelow(90) + 10
        jid = f"{phone}:{device}@s.whatsapp.net"
        self._sessions[account_id].jid = jid
        self.server.device_linked(jid, phone)
        self._emit(account_id, Paired(phone=phone, jid=jid, platform="android"))
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        blob = json.dumps({"phone": phone, "jid": jid, "device": device, "secret": secret})
        self._emit(account_id, CredentialsUpdated(blob.encode()))
        faults = self.server.faults_for(phone)
        await asyncio.sleep(self.server.seconds(PAIRING_DELAY + faults.slow_pairing))
        if faults.logout_after_pair:
            self._sessions.pop(account_id, None)
            self.server.device_logged_out(jid)
            self._emit(account_id, LoggedOut("logged_out_from_phone"))
            return
        self._mark_connected(account_id, phone)

    def _mark_connected(self, account_id: str, phone: str) -> None:
        session = self._sessions[account_id]
        session.phone = phone
        session.connected = True
        if session.jid is not None:
            self.server.open_connection(session.jid, self, account_id)
        self._emit(account_id, Connected())
        if session.jid is not None:
            self.server.flush(session.jid)
        if self.server.faults_for(phone).flapping:
            self._tasks.spawn(self._flap_later(account_id, phone), name=f"flap:{account_id}")

    async def _flap_later(self, account_id: str, phone: str) -> None:
        await asyncio.sleep(self.server.seconds(5.0))
        session = self._sessions.get(account_id)
        if session is not None and session.connected and session.phone == phone:
            self._drop(session, logout=False)

    async def _run_connect(self, account_id: str, phone: str, *, retrying: bool = False) -> None:
        """Connect from credentials; after a drop, wait out the backoff first, like a client."""
        self._sessions[account_id].phone = phone
        attempt = 1 if retrying else 0
        if retrying:
            await asyncio.sleep(self.server.seconds(RECONNECT.delay(attempt)))
        while self.server.faults_for(phone).outage:
            if attempt == 0:
                self._emit(account_id, Disconnected("server_unavailable", will_retry=True))
            attempt += 1
            await asyncio.sleep(self.server.seconds(RECONNECT.delay(attempt)))
        self._mark_connected(account_id, phone)

    def _linked_to(self, phone: str, only: Collection[str] | None) -> list[_Session]:
        return [
            s
            for s in self._sessions.values()
            if s.phone == phone and s.connected and (only is None or s.account_id in only)
        ]

    def drop_phone(self, phone: str, *, logout: bool, only: Collection[str] | None = None) -> int:
        sessions = self._linked_to(phone, only)
        for session in sessions:
            self._drop(session, logout=logout)
        return len(sessions)

    def _drop(self, session: _Session, *, logout: bool) -> None:
        self._offline(session)
        if logout:
            self._sessions.pop(session.account_id, None)
            self._stop(session)
            if session.jid is not None:
                self.server.device_logged_out(session.jid)
            self._emit(session.account_id, LoggedOut("logged_out_from_phone"))
            return
        self._emit(session.account_id, Disconnected("connection_lost", will_retry=True))
        phone = session.phone or ""
        session.task = self._tasks.spawn(
            self._run_connect(session.account_id, phone, retrying=True),
            name=f"reconnect:{session.account_id}",
        )
