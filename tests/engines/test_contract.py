"""The Engine contract (DESIGN §4), run against every engine: the simulator in-process, the
simulator shared through a sim-server (``RemoteSimEngine`` over its WebSocket), and the real
whatsmeow engine, offline.

The whatsmeow engine here is the real one: ``WhatsmeowEngine`` starting engine-host subprocesses
that load neonize. Nothing here can reach WhatsApp, so its links end instead of showing codes
(a dial that cannot reach the servers ends with ``ConnectFailed``, at the latest after the
engine's ``connect_timeout``). Each test asserts what a caller of the engine sees: the events its
sink receives, for which account, and what its calls return or raise. Where the two engines
differ, the test says what each one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from tests.whatsmeow_support import require_neonize
from wagate.core.states import LinkMethod
from wagate.engines.base import (
    Connected,
    ConnectFailed,
    Disconnected,
    Engine,
    EngineEvent,
    LinkExpired,
    LoggedOut,
    MessageStatus,
    PairFailed,
    QrCode,
)
from wagate.engines.sim import QR_LIFETIMES, ScanResult, SimEngine, SimServer
from wagate.engines.simclient import RemoteSimEngine
from wagate.engines.simserver import build_app
from wagate.engines.whatsmeow.adapter import credentials_blob
from wagate.engines.whatsmeow.engine import WhatsmeowEngine
from wagate.errors import EngineUnavailable, WagateError

SIM_SCALE = 0.01
CONNECT_TIMEOUT = 2.0  # whatsmeow: a dial that neither fails nor answers ends after this
CALL_TIMEOUT = 5.0  # whatsmeow: every call into an engine host answers within this
BOUND = CALL_TIMEOUT + 2.0  # no engine call may take longer than this here
PHONE = "5511999990001"
# How a link that cannot reach WhatsApp's servers ends (whatsmeow offline).
OFFLINE_REASONS = {"network_unreachable", "connection_refused", "connect_timeout"}


# -- recording what an engine reports -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    account_id: str
    event: EngineEvent
    at: datetime  # when the sink received it


@dataclass
class Recorder:
    """The sink handed to the engine: every (account id, event) in arrival order."""

    seen: list[Seen] = field(default_factory=list)

    def sink(self, account_id: str, event: EngineEvent) -> None:
        self.seen.append(Seen(account_id, event, datetime.now(UTC)))

    def mark(self) -> int:
        return len(self.seen)

    def of(self, account_id: str, since: int = 0) -> list[EngineEvent]:
        return [s.event for s in self.seen[since:] if s.account_id == account_id]

    def accounts(self) -> set[str]:
        return {s.account_id for s in self.seen}

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Whether ``predicate`` holds within ``timeout`` seconds (checked as events arrive)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def ends_link(event: EngineEvent) -> bool:
    """An event after which the link attempt is over without a code to show."""
    if isinstance(event, Disconnected):
        return not event.will_retry
    return isinstance(event, ConnectFailed | PairFailed | LinkExpired)


def shows_or_ends(event: EngineEvent) -> bool:
    return isinstance(event, QrCode) or ends_link(event)


def new_account() -> str:
    return f"acct-{uuid.uuid4().hex[:12]}"


# -- the engines --------------------------------------------------------------------------------


@dataclass
class Harness:
    """A started (or not yet started) engine with the recorder it reports to."""

    kind: str
    engine: Engine
    recorder: Recorder
    server: SimServer | None  # the simulated WhatsApp side (sim only)
    link_bound: float  # real seconds within which a new link shows a code or ends
    settle: float  # real seconds within which an open link reports again (sim: next code)
    quiet: float  # real seconds to wait for events that must not come

    async def start(self) -> None:
        await self.engine.start(self.recorder.sink)

    async def first_outcome(self, account_id: str) -> EngineEvent:
        """The first code or link-ending event of the account's link, within ``link_bound``."""

        def outcome() -> bool:
            return any(shows_or_ends(e) for e in self.recorder.of(account_id))

        reached = await self.recorder.wait(outcome, self.link_bound)
        events = self.recorder.of(account_id)
        assert reached, f"{self.kind}: the link of {account_id} neither showed a code nor ended"
        return next(e for e in events if shows_or_ends(e))


Factory = Callable[..., Awaitable[Harness]]


SIMULATORS = ("sim", "sim-server")


@pytest.fixture(params=["sim", "sim-server", "whatsmeow"])
def engine_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "whatsmeow":
        require_neonize()
    return kind


@pytest.fixture
async def make_engine(engine_kind: str, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory: ``await make_engine(start=True)`` → a ``Harness`` of the parametrized engine;
    every engine it made is closed after the test."""
    made: list[Harness] = []
    runners: list[web.AppRunner] = []

    async def shared(server: SimServer) -> RemoteSimEngine:
        """An engine of a sim-server serving ``server`` on a free local port."""
        runner = web.AppRunner(build_app(server))
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return RemoteSimEngine(f"http://{host}:{port}")

    async def make(*, start: bool = True) -> Harness:
        recorder = Recorder()
        if engine_kind in SIMULATORS:
            server = SimServer(SIM_SCALE)
            harness = Harness(
                engine_kind,
                SimEngine(server) if engine_kind == "sim" else await shared(server),
                recorder,
                server,
                link_bound=1.0,
                settle=server.seconds(QR_LIFETIMES[0]) + 0.4,
                quiet=0.3,
            )
        else:
            engine = WhatsmeowEngine(
                tmp_path / f"whatsmeow{len(made)}",
                hosts=2,
                connect_timeout=CONNECT_TIMEOUT,
                call_timeout=CALL_TIMEOUT,
                env={"WAGATE_LOG_LEVEL": "WARNING"},
            )
            harness = Harness(
                "whatsmeow",
                engine,
                recorder,
                None,
                link_bound=CONNECT_TIMEOUT + 5.0,
                settle=CONNECT_TIMEOUT + 1.0,
                quiet=0.5,
            )
        made.append(harness)
        if start:
            await harness.start()
        return harness

    yield make
    for harness in reversed(made):
        await harness.engine.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def engine(make_engine: Factory) -> Harness:
    """A started engine of each kind in turn."""
    return await make_engine()


async def still_serves(h: Harness) -> None:
    """The engine is healthy and a new link on it still reports its outcome."""
    assert h.engine.healthy()
    account_id = new_account()
    await asyncio.wait_for(h.engine.link(account_id, LinkMethod.QR, None), BOUND)
    await h.first_outcome(account_id)


# -- 1. lifecycle -------------------------------------------------------------------------------


async def test_start_makes_healthy_and_close_is_idempotent(make_engine: Factory) -> None:
    h = await make_engine(start=False)
    assert not h.engine.healthy()  # both engines: not before start
    await h.start()
    assert h.engine.healthy()
    # A link in progress when the engine closes reports nothing afterwards.
    await h.engine.link(new_account(), LinkMethod.QR, None)

    await asyncio.wait_for(h.engine.close(), BOUND)
    closed_at = h.recorder.mark()
    assert not h.engine.healthy()
    await asyncio.wait_for(h.engine.close(), BOUND)  # twice is fine
    assert not h.engine.healthy()

    await asyncio.sleep(h.settle)
    assert h.recorder.seen[closed_at:] == []
    if isinstance(h.engine, WhatsmeowEngine):
        # Closing leaves no engine-host process behind.
        for pid in h.engine.host_pids():
            assert pid is not None
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


async def test_commands_after_close_are_refused(make_engine: Factory) -> None:
    """A closed engine takes no new link or session: the caller hears so at once."""
    h = await make_engine()
    await asyncio.wait_for(h.engine.close(), BOUND)
    mark = h.recorder.mark()
    with pytest.raises(EngineUnavailable):
        await asyncio.wait_for(h.engine.link(new_account(), LinkMethod.QR, None), BOUND)
    await asyncio.sleep(h.quiet)
    assert h.recorder.seen[mark:] == []


# -- 2. link ------------------------------------------------------------------------------------


async def test_link_reports_a_code_or_its_end_for_that_account_only(engine: Harness) -> None:
    h = engine
    first, second = new_account(), new_account()
    await asyncio.wait_for(h.engine.link(first, LinkMethod.QR, None), BOUND)
    await asyncio.wait_for(h.engine.link(second, LinkMethod.QR, None), BOUND)

    outcomes = {a: await h.first_outcome(a) for a in (first, second)}
    await asyncio.sleep(h.quiet)
    assert h.recorder.accounts() == {first, second}  # nothing for any other account id

    for account_id, outcome in outcomes.items():
        if isinstance(outcome, QrCode):
            shown = next(s for s in h.recorder.seen if s.event is outcome)
            assert outcome.index == 0
            assert outcome.expires_at > shown.at
            assert outcome.code and outcome.code not in repr(outcome)
            assert outcome.code not in str(outcome)
        else:
            assert ends_link(outcome), (account_id, outcome)

    if h.kind in SIMULATORS:
        # The simulator shows a code at once; each account has its own.
        assert all(isinstance(o, QrCode) for o in outcomes.values())
        codes = {o.code for o in outcomes.values() if isinstance(o, QrCode)}
        assert len(codes) == 2
    elif not any(isinstance(o, QrCode) for o in outcomes.values()):
        # whatsmeow offline: the dial fails (no such host, here) and ends the link, retryably;
        # the host lets go of the client, so nothing else is reported for the account.
        for account_id, outcome in outcomes.items():
            assert isinstance(outcome, ConnectFailed), outcome
            assert outcome.reason in OFFLINE_REASONS and outcome.retryable
            assert h.recorder.of(account_id) == [outcome]


# -- 3. cancel_link -----------------------------------------------------------------------------


async def test_cancel_link_stops_the_link_events_of_that_account(engine: Harness) -> None:
    h = engine
    cancelled, control = new_account(), new_account()
    await asyncio.wait_for(h.engine.link(control, LinkMethod.QR, None), BOUND)
    await asyncio.wait_for(h.engine.link(cancelled, LinkMethod.QR, None), BOUND)
    shown: QrCode | None = None
    if h.server is not None:
        # The simulator shows a code at once: cancel a link whose code is on screen.
        first = await h.first_outcome(cancelled)
        assert isinstance(first, QrCode)
        shown = first
    # whatsmeow offline never shows a code: cancel while its dial is under way.

    await asyncio.wait_for(h.engine.cancel_link(cancelled), BOUND)
    after = h.recorder.mark()
    await asyncio.sleep(h.settle)

    # Nothing more for the cancelled account: no QrCode/PairCode, and not even the end of the
    # link it abandoned (both engines drop a cancelled run's late reports).
    assert h.recorder.of(cancelled, since=after) == []
    # The wait was long enough: the link left open reported again meanwhile.
    if h.server is not None:
        assert any(isinstance(e, QrCode) and e.index >= 1 for e in h.recorder.of(control))
        assert shown is not None
        assert h.server.scan(shown.code, PHONE) is ScanResult.EXPIRED_CODE
    else:
        assert any(shows_or_ends(e) for e in h.recorder.of(control))
    assert h.engine.healthy()


# -- 4. unknown accounts ------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["cancel_link", "disconnect", "logout"])
async def test_calls_for_an_unknown_account_neither_hang_nor_break_the_engine(
    engine: Harness, op: str
) -> None:
    h = engine
    stranger = new_account()
    call: Callable[[str], Awaitable[None]] = getattr(h.engine, op)
    # Raising a WagateError is allowed; both engines return at once: nothing to release.
    with contextlib.suppress(WagateError):
        await asyncio.wait_for(call(stranger), BOUND)
    await asyncio.sleep(h.quiet)
    assert h.recorder.of(stranger) == []  # no Disconnected/LoggedOut for a session never had
    await still_serves(h)


# -- 5. garbage credentials ---------------------------------------------------------------------


def _credentials(case: str, account_id: str) -> bytes:
    if case == "text":
        return b"not credentials"
    if case == "binary":
        return b"\x80\x81 not utf-8 \xff"
    # A whatsmeow blob naming a device store that does not exist.
    return credentials_blob(f"whatsmeow/{account_id}.db", f"{PHONE}:7@s.whatsapp.net")


# What each engine does, observed: an event it reports, or the error its ``connect`` raises.
EXPECTED_CONNECT: dict[tuple[str, str], EngineEvent | type[WagateError]] = {
    ("sim", "text"): LoggedOut("credentials_rejected"),
    ("sim", "binary"): LoggedOut("credentials_rejected"),
    ("sim", "missing-device"): LoggedOut("credentials_rejected"),
    ("sim-server", "text"): LoggedOut("credentials_rejected"),
    ("sim-server", "binary"): LoggedOut("credentials_rejected"),
    ("sim-server", "missing-device"): LoggedOut("credentials_rejected"),
    # The engine host refuses a blob it cannot read; the call fails, nothing is reported.
    ("whatsmeow", "text"): EngineUnavailable,
    # Fails today: WhatsmeowEngine.connect decodes the blob as UTF-8 before any check and lets
    # UnicodeDecodeError out, which the session layer (catching WagateError) does not expect.
    ("whatsmeow", "binary"): EngineUnavailable,
    ("whatsmeow", "missing-device"): LoggedOut("credentials_missing"),
}


@pytest.mark.parametrize("case", ["text", "binary", "missing-device"])
async def test_connect_with_garbage_credentials_never_connects(engine: Harness, case: str) -> None:
    h = engine
    account_id = new_account()
    raised: BaseException | None = None
    try:
        await asyncio.wait_for(h.engine.connect(account_id, _credentials(case, account_id)), BOUND)
    except Exception as exc:
        raised = exc
    assert raised is None or isinstance(raised, WagateError), (
        f"{h.kind}: connect with {case} credentials raised {raised!r}, not a WagateError"
    )

    def refused() -> bool:
        return raised is not None or any(
            not isinstance(e, Connected) for e in h.recorder.of(account_id)
        )

    assert await h.recorder.wait(refused, h.link_bound), "neither an error nor an event"
    await asyncio.sleep(h.quiet)
    events = h.recorder.of(account_id)
    assert not any(isinstance(e, Connected) for e in events)

    expected = EXPECTED_CONNECT[(h.kind, case)]
    if isinstance(expected, type):
        assert isinstance(raised, expected) and events == []
    else:
        assert raised is None and events == [expected]
    await still_serves(h)


# -- 6. send_text without a session -------------------------------------------------------------


@pytest.mark.parametrize("account", ["unknown", "linking"])
async def test_send_text_without_a_session_raises(engine: Harness, account: str) -> None:
    h = engine
    account_id = new_account()
    if account == "linking":
        await asyncio.wait_for(h.engine.link(account_id, LinkMethod.QR, None), BOUND)
    # Both engines raise EngineUnavailable: there is no connected session to send with.
    with pytest.raises(EngineUnavailable):
        await asyncio.wait_for(h.engine.send_text(account_id, PHONE, "hello"), BOUND)
    await asyncio.sleep(h.quiet)
    assert not any(isinstance(e, MessageStatus) for e in h.recorder.of(account_id))
    assert h.engine.healthy()
