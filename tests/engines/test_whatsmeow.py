"""Contract tests of the whatsmeow engine's mapping, through neonize's real client dispatch.

Nothing here reaches WhatsApp. Each test builds the protobuf messages whatsmeow's Go side would
send (``neonize.proto.Neonize_pb2``), serializes them, and hands the bytes to the neonize client's
own entry points — ``Event.execute`` for the event stream, the QR and login-status callbacks —
exactly as the Go library calls them. The client is bound by the engine host's code, its events
travel the wire form to the gateway, and the gateway applies them: the tests check both the
``EngineEvent``s and the account states a user sees through the HTTP API.
"""

from __future__ import annotations

import asyncio
import ctypes
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.apiclient import ApiClient
from tests.whatsmeow_support import require_neonize
from wagate.core.states import LinkMethod
from wagate.engines.base import (
    Banned,
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
    Outdated,
    Paired,
    QrCode,
    Reopen,
    Replaced,
)
from wagate.engines.whatsmeow.adapter import read_credentials
from wagate.engines.wire import from_wire

PHONE = "5511999990000"


class DispatchEngine:
    """An engine whose sessions are the engine host's own neonize clients, driven by the test
    instead of by Go; everything they report reaches the gateway as the real engine relays it."""

    name = "whatsmeow-dispatch"

    def __init__(self, tmp_path: Any) -> None:
        from wagate.engines.whatsmeow.host import Host, load_neonize

        self.seen: list[EngineEvent] = []
        self.sink: EngineSink | None = None
        self.host = Host(load_neonize(), tmp_path, self._relay, connect_timeout=5.0)
        self.loop = asyncio.get_running_loop()

    def _relay(self, account_id: str, wire: dict[str, Any]) -> None:
        # Go calls back on its own threads; the gateway takes events on its loop.
        self.loop.call_soon_threadsafe(self._deliver, account_id, from_wire(wire))

    def _deliver(self, account_id: str, event: EngineEvent) -> None:
        self.seen.append(event)
        if self.sink is not None:
            self.sink(account_id, event)

    def client(self, account_id: str) -> Any:
        return self.host.sessions[account_id].client

    async def start(self, sink: EngineSink, reopen: Reopen | None = None) -> None:
        self.sink = sink
        self.loop = asyncio.get_running_loop()

    async def close(self) -> None:
        self.host.shutdown()

    def healthy(self) -> bool:
        return True

    async def link(self, account_id: str, method: LinkMethod, phone: str | None) -> None:
        session = self.host.new_session(account_id, method.value, phone=phone)  # type: ignore[arg-type]
        self.host.bind(session)

    async def cancel_link(self, account_id: str) -> None:
        self.host.close_session(account_id)

    async def connect(self, account_id: str, credentials: bytes) -> None:
        self.host.bind(self.host.new_session(account_id, "session"))

    async def disconnect(self, account_id: str) -> None:
        self.host.close_session(account_id)

    async def logout(self, account_id: str) -> None:
        self.host.close_session(account_id, delete_store=True)

    async def send_text(self, account_id: str, to: str, text: str) -> str:
        raise NotImplementedError


# -- feeding the client as Go does --------------------------------------------------------------


def complete(message: Any) -> Any:
    """Give every unset required field its zero value, as Go's encoder always writes them."""
    for field in message.DESCRIPTOR.fields:
        if not field.is_required or message.HasField(field.name):
            continue
        if field.message_type is not None:
            getattr(message, field.name).SetInParent()
        else:
            setattr(message, field.name, field.default_value)
    for field, value in message.ListFields():
        if field.message_type is not None and not field.is_repeated:
            complete(value)
    return message


def dispatch(client: Any, message: Any) -> None:
    """Serialize ``message`` and pass it through neonize's event dispatch, as Go's callback."""
    from neonize.events import EVENT_TO_INT

    data = complete(message).SerializeToString()
    buffer = ctypes.create_string_buffer(data, len(data) or 1)
    client.event.execute(0, ctypes.addressof(buffer), len(data), EVENT_TO_INT[type(message)])


def c_string(text: str) -> tuple[Any, int]:
    buffer = ctypes.create_string_buffer(text.encode())
    return buffer, ctypes.addressof(buffer)


def show_qr(client: Any, code: str) -> None:
    buffer, address = c_string(code)
    client._NewClient__onQr(0, address)


def login_status(client: Any, status: str) -> None:
    buffer, address = c_string(status)
    client._NewClient__onLoginStatus(0, address)


def pb() -> Any:
    from neonize.proto import Neonize_pb2

    return Neonize_pb2


def jid(user: str, device: int = 0) -> Any:
    return pb().JID(
        User=user, RawAgent=0, Device=device, Integrator=0, Server="s.whatsapp.net", IsEmpty=False
    )


def pair_success(device: int = 12) -> Any:
    return pb().PairStatus(
        ID=jid(PHONE, device), BusinessName="", Platform="android", Status=pb().PairStatus.SUCCESS
    )


# -- a gateway over the dispatch engine ---------------------------------------------------------


@pytest.fixture
async def wm(tmp_path):  # type: ignore[no-untyped-def]
    require_neonize()
    from tests.conftest import ADMIN_KEY
    from wagate.api.app import create_app
    from wagate.config import Settings
    from wagate.gateway import Gateway

    engine = DispatchEngine(tmp_path / "data")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/wm.db",
        engine="sim",
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
    )  # type: ignore[call-arg]
    gateway = Gateway(settings, engine=engine)  # type: ignore[arg-type]
    app = create_app(gateway=gateway)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wagate.test")
    api = ApiClient(http, app, ADMIN_KEY)
    tenant = await api.tenant()
    account = await api.account(tenant)
    yield api, tenant, account["id"], engine, gateway
    await http.aclose()
    await lifespan.__aexit__(None, None, None)


async def settle(gateway: Any) -> None:
    await asyncio.sleep(0)  # let relayed events reach the sink
    await gateway.manager().settle()


async def connected(wm: Any) -> Any:
    """Link by QR through the dispatch: a code, the scan's outcome, the pairing, connected."""
    api, tenant, account_id, engine, gateway = wm
    await api.link(tenant, account_id)
    client = engine.client(account_id)
    show_qr(client, "2@first,noise,identity,adv")
    login_status(client, "success")
    dispatch(client, pair_success())
    dispatch(client, pb().Connected(status=True))
    await settle(gateway)
    return client


# -- the contract -------------------------------------------------------------------------------


async def test_qr_rotation_then_timeout_expires_the_attempt(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    attempt = await api.link(tenant, account_id)
    client = engine.client(account_id)
    before = datetime.now(UTC)
    for n in range(3):
        show_qr(client, f"2@code{n},noise,identity,adv")
    await settle(gateway)
    codes = [e for e in engine.seen if isinstance(e, QrCode)]
    assert [c.index for c in codes] == [0, 1, 2]
    assert [c.code for c in codes] == [f"2@code{n},noise,identity,adv" for n in range(3)]
    lifetimes = [(c.expires_at - before).total_seconds() for c in codes]
    assert 59 < lifetimes[0] < 62 and all(19 < s < 22 for s in lifetimes[1:])
    shown = await api.qr(tenant, account_id, after_index=1)
    assert shown["code"] == "2@code2,noise,identity,adv" and shown["attempt_id"] == attempt["id"]

    login_status(client, "timeout")
    await settle(gateway)
    assert isinstance(engine.seen[-1], LinkExpired)
    ended = (await api.attempts(tenant, account_id))[0]
    assert (ended["outcome"], ended["qr_count"]) == ("expired", 3)
    assert (await api.get_account(tenant, account_id))["status"] == "unlinked"


async def test_pair_success_then_connected(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    await connected(wm)
    paired = next(e for e in engine.seen if isinstance(e, Paired))
    assert (paired.phone, paired.jid, paired.platform) == (
        PHONE,
        f"{PHONE}:12@s.whatsapp.net",
        "android",
    )
    assert isinstance(engine.seen[-1], Connected)
    account = await api.get_account(tenant, account_id)
    assert (account["status"], account["phone"]) == ("connected", PHONE)
    assert (await api.attempts(tenant, account_id))[0]["outcome"] == "linked"
    # The credentials wagate keeps name whatsmeow's store for this account and the device.
    blob = await gateway.auth.load(account_id)
    assert blob == next(e for e in engine.seen if isinstance(e, CredentialsUpdated)).blob
    assert read_credentials(blob) == (f"whatsmeow/{account_id}.db", f"{PHONE}:12@s.whatsapp.net")


async def test_logged_out_from_the_phone(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    client = await connected(wm)
    dispatch(client, pb().LoggedOut(OnConnect=False, Reason=pb().LOGGED_OUT))
    await settle(gateway)
    assert engine.seen[-1] == LoggedOut("logged_out_from_phone")
    account = await api.get_account(tenant, account_id)
    assert (account["status"], account["status_reason"]) == ("logged_out", "logged_out_from_phone")
    assert await gateway.auth.load(account_id) is None
    assert account_id not in engine.host.sessions  # the host let go of the client


async def test_stream_replaced(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    client = await connected(wm)
    dispatch(client, pb().StreamReplaced())
    await settle(gateway)
    assert engine.seen[-1] == Replaced()
    account = await api.get_account(tenant, account_id)
    assert (account["status"], account["status_reason"]) == ("failed", "stream_replaced")


async def test_temporary_ban(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    client = await connected(wm)
    ban = pb().TemporaryBan(Code=pb().TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=3600)
    dispatch(client, ban)
    await settle(gateway)
    event = engine.seen[-1]
    assert isinstance(event, Banned) and event.code == "send_to_too_many_people"
    assert event.until is not None
    assert abs(event.until - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(seconds=30)
    account = await api.get_account(tenant, account_id)
    assert (account["status"], account["status_reason"]) == ("failed", "banned")


async def test_client_outdated_during_a_link(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    await api.link(tenant, account_id)
    client = engine.client(account_id)
    show_qr(client, "2@only,noise,identity,adv")
    login_status(client, "err-client-outdated")
    await settle(gateway)
    assert engine.seen[-1] == Outdated()
    ended = (await api.attempts(tenant, account_id))[0]
    assert (ended["outcome"], ended["reason"]) == ("failed", "client_outdated")
    assert (await api.get_account(tenant, account_id))["status"] == "failed"


async def test_client_outdated_event_on_a_session(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    client = await connected(wm)
    dispatch(client, pb().ClientOutdated())
    await settle(gateway)
    assert engine.seen[-1] == Outdated()
    account = await api.get_account(tenant, account_id)
    assert (account["status"], account["status_reason"]) == ("failed", "client_outdated")


async def test_connect_failure_from_the_server_during_a_link(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    await api.link(tenant, account_id)
    dispatch(engine.client(account_id), pb().ConnectFailure(Reason=pb().SERVICE_UNAVAILABLE))
    await settle(gateway)
    assert engine.seen[-1] == ConnectFailed("server_service_unavailable", retryable=True)
    ended = (await api.attempts(tenant, account_id))[0]
    assert (ended["outcome"], ended["reason"]) == ("failed", "server_service_unavailable")
    assert (await api.get_account(tenant, account_id))["status"] == "unlinked"


async def test_connect_failure_of_a_real_dial(wm) -> None:  # type: ignore[no-untyped-def]
    """The client really dials (no route here, or a refused one): neonize's error becomes
    ``ConnectFailed`` with a reason naming the cause, and the attempt ends with it."""
    api, tenant, account_id, engine, gateway = wm
    await api.link(tenant, account_id)
    engine.host.start(engine.host.sessions[account_id])
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not any(isinstance(e, ConnectFailed | QrCode) for e in engine.seen):
        assert datetime.now(UTC) < deadline, "the dial neither failed nor showed a code"
        await settle(gateway)
        await asyncio.sleep(0.02)
    if any(isinstance(e, QrCode) for e in engine.seen):
        pytest.skip("this machine reaches WhatsApp")
    failed = next(e for e in engine.seen if isinstance(e, ConnectFailed))
    assert failed.reason in ("network_unreachable", "connection_refused", "connect_timeout")
    await settle(gateway)
    ended = (await api.attempts(tenant, account_id))[0]
    assert (ended["outcome"], ended["reason"]) == ("failed", failed.reason)


async def test_connection_drop_then_back(wm) -> None:  # type: ignore[no-untyped-def]
    api, tenant, account_id, engine, gateway = wm
    client = await connected(wm)
    dispatch(client, pb().Disconnected(status=True))
    await settle(gateway)
    assert engine.seen[-1] == Disconnected("connection_lost", will_retry=True)
    assert (await api.get_account(tenant, account_id))["status"] == "reconnecting"
    dispatch(client, pb().Connected(status=True))
    await settle(gateway)
    assert (await api.get_account(tenant, account_id))["status"] == "connected"


async def test_messages_and_receipts(wm) -> None:  # type: ignore[no-untyped-def]
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WaMessage

    api, tenant, account_id, engine, gateway = wm
    client = await connected(wm)
    chat = jid("5511988887777")
    source = pb().MessageSource(Chat=chat, Sender=chat, IsFromMe=False, IsGroup=False)
    info = pb().MessageInfo(MessageSource=source, ID="3EB0AA", Timestamp=1_700_000_000)
    dispatch(client, pb().Message(Info=info, Message=WaMessage(conversation="hello")))
    receipt = pb().Receipt(MessageSource=source, MessageIDs=["3EB0BB"], Type=pb().Receipt.READ)
    dispatch(client, receipt)
    await settle(gateway)
    received, status = engine.seen[-2:]
    assert received == MessageReceived(
        wa_id="3EB0AA",
        chat="5511988887777@s.whatsapp.net",
        sender="5511988887777@s.whatsapp.net",
        text="hello",
        timestamp=datetime.fromtimestamp(1_700_000_000, UTC),
    )
    assert status == MessageStatus("3EB0BB", "read")


def test_missing_extra_is_an_error_naming_the_fix(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    from wagate.config import Settings
    from wagate.errors import EngineUnavailable
    from wagate.gateway import build_engine

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "neonize" else real(name, *a)
    )
    monkeypatch.delenv("WAGATE_ENGINE", raising=False)
    assert Settings().engine == "whatsmeow"
    with pytest.raises(EngineUnavailable) as raised:
        build_engine(Settings(engine="whatsmeow", data_dir=tmp_path))  # type: ignore[call-arg]
    assert "pip install 'wagate[whatsmeow]'" in raised.value.message
    assert "libmagic1" in raised.value.message and "--engine sim" in raised.value.message
