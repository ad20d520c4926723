"""Random sequences of engine events and commands, applied by the real SessionManager on a real
database: no forbidden transition, every closed attempt has exactly one outcome."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select

from wagate.core.caller import Caller
from wagate.core.states import LINKED_STATUSES, AccountStatus, LinkMethod, can_transition
from wagate.db.database import Database
from wagate.db.models import Account, Event, LinkAttempt, Workspace
from wagate.engines import base as ev
from wagate.errors import Conflict, NotFound
from wagate.sessions import linking
from wagate.sessions.manager import SessionManager

PHONES = ("5511000000001", "5511000000002")
SOON = datetime.now(UTC) + timedelta(minutes=1)

EVENTS = st.one_of(
    st.builds(ev.QrCode, st.just("2@x,y,z,w"), st.integers(0, 5), st.just(SOON)),
    st.builds(ev.PairCode, st.just("ABCD-EFGH"), st.just(SOON)),
    st.just(ev.LinkExpired()),
    st.builds(ev.Paired, st.sampled_from(PHONES), st.just("jid"), st.just("android")),
    st.builds(ev.PairFailed, st.sampled_from(["qr_rejected", "server_unavailable"])),
    st.just(ev.Connected()),
    st.builds(ev.Disconnected, st.just("connection_lost"), st.booleans()),
    st.builds(ev.LoggedOut, st.just("logged_out_from_phone")),
    st.just(ev.Replaced()),
    st.builds(ev.Banned, st.just("401"), st.none()),
    st.just(ev.Outdated()),
    st.builds(ev.ConnectFailed, st.just("network_unreachable"), st.booleans()),
)


class NullEngine:
    """Takes every command and reports nothing: the test plays the engine's part."""

    name = "null"

    async def start(self, sink: Any, reopen: Any = None) -> None: ...
    async def close(self) -> None: ...
    def healthy(self) -> bool:
        return True

    async def link(self, account_id: str, method: LinkMethod, phone: str | None) -> None: ...
    async def cancel_link(self, account_id: str) -> None: ...
    async def connect(self, account_id: str, credentials: bytes) -> None: ...
    async def disconnect(self, account_id: str) -> None: ...
    async def logout(self, account_id: str) -> None: ...
    async def send_text(self, account_id: str, to: str, text: str) -> str:
        return "id"


_template: list[Path] = []


def template_db() -> Path:
    """A migrated SQLite file, made once and copied for every example."""
    if not _template:
        path = Path(tempfile.mkdtemp(prefix="wagate-sm-")) / "template.db"

        async def build() -> None:
            db = Database(f"sqlite+aiosqlite:///{path}")
            await db.upgrade()
            await db.close()

        asyncio.run(build())
        _template.append(path)
    return _template[0]


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="wagate-sm-"))
        shutil.copy(template_db(), self.dir / "db.sqlite")
        self.loop = asyncio.new_event_loop()
        self.db = Database(f"sqlite+aiosqlite:///{self.dir / 'db.sqlite'}")
        self.manager = SessionManager(self.db, NullEngine())
        self.caller = Caller(key_id=None, workspace_id=None)
        self.accounts = self.run(self._setup())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _setup(self) -> list[str]:
        async def work(session: Any) -> list[str]:
            workspace = Workspace(name="w", webhook_secret="x")
            session.add(workspace)
            await session.flush()
            accounts = [Account(workspace_id=workspace.id, label=f"a{i}") for i in range(2)]
            session.add_all(accounts)
            await session.flush()
            return [a.id for a in accounts]

        return await self.db.run(work)  # type: ignore[no-any-return]

    def teardown(self) -> None:
        self.run(self.manager.close())
        self.run(self.db.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(which=st.integers(0, 1), method=st.sampled_from(["qr", "code"]))
    def link(self, which: int, method: str) -> None:
        phone = PHONES[which] if method == "code" else None
        # Linked accounts refuse a new link: a fitting answer, not a failure.
        with contextlib.suppress(Conflict):
            self.run(
                linking.link(
                    self.manager, self.caller, self.accounts[which], LinkMethod(method), phone
                )
            )

    @rule(which=st.integers(0, 1))
    def cancel(self, which: int) -> None:
        with contextlib.suppress(NotFound):  # nothing open to cancel
            self.run(linking.cancel_link(self.manager, self.caller, self.accounts[which]))

    @rule(which=st.integers(0, 1), event=EVENTS)
    def engine_event(self, which: int, event: ev.EngineEvent) -> None:
        # Applied directly, not through the queue, so any error surfaces here.
        self.run(self.manager.apply(self.accounts[which], event))

    @invariant()
    def database_is_consistent(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        async with self.db.sessions() as session:
            attempts = list((await session.execute(select(LinkAttempt))).scalars())
            accounts = {a.id: a for a in (await session.execute(select(Account))).scalars()}
            events = (await session.execute(select(Event).order_by(Event.id))).scalars()
            for event in events:
                if event.type == "account.status":
                    before, after = (
                        AccountStatus(event.data["from"]),
                        AccountStatus(event.data["status"]),
                    )
                    assert can_transition(before, after), (before, after)
        for attempt in attempts:
            assert (attempt.ended_at is None) == (attempt.outcome is None), attempt.id
        for account in accounts.values():
            open_ = [a for a in attempts if a.account_id == account.id and a.ended_at is None]
            assert len(open_) <= 1
            status = AccountStatus(account.status)
            if status is AccountStatus.LINKING:
                assert len(open_) == 1
            if open_:
                assert status in (
                    AccountStatus.LINKING,
                    AccountStatus.PAIRING,
                    AccountStatus.RECONNECTING,
                ), status
        linked = [a.phone for a in accounts.values() if AccountStatus(a.status) in LINKED_STATUSES]
        assert len(linked) == len(set(linked))


SessionMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_session_machine = SessionMachine.TestCase
