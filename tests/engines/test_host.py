"""Engine hosts under the real gateway: a host killed with SIGKILL takes only its own sessions
down; they are restored through the restoration path on a new host while the API keeps answering.

The hosts dial through a proxy that never answers (``silent_host``), so each session stays in
its host, mid-connect, the way a live session would, and every account can be seen there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tests.apiclient import ApiClient
from tests.whatsmeow_support import plant_device, require_neonize, silent_host
from wagate.core.states import AccountStatus as S
from wagate.db.models import Account
from wagate.engines.whatsmeow.adapter import credentials_blob
from wagate.services.accounts import change_status


async def linked_account(api: ApiClient, tenant: Any, phone: str) -> str:
    """An account as a finished pairing leaves it: connected, its device in whatsmeow's store,
    the credentials blob naming that store in wagate's auth store."""
    gateway = api.app.state.gateway  # type: ignore[union-attr]
    account_id = (await api.account(tenant, label=phone))["id"]
    device = f"{phone}:3@s.whatsapp.net"
    plant_device(gateway.settings.data_dir / "whatsmeow" / f"{account_id}.db", device)
    await gateway.auth.save(account_id, credentials_blob(f"whatsmeow/{account_id}.db", device))

    async def work(session: AsyncSession) -> None:
        account = await session.get(Account, account_id)
        assert account is not None
        account.phone, account.jid = phone, device
        for status in (S.LINKING, S.PAIRING, S.CONNECTED):
            change_status(session, account, status)

    await gateway.db.run(work)
    return account_id


async def held(engine: Any) -> list[set[str]]:
    return [set((await engine.ping(i))["sessions"]) for i in range(len(engine.host_pids()))]


async def until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_sigkill_of_a_host_restores_its_sessions(  # type: ignore[no-untyped-def]
    gateway_factory, tmp_path, monkeypatch
) -> None:
    require_neonize()
    with silent_host() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        api = await gateway_factory(
            f"sqlite+aiosqlite:///{tmp_path}/hosts.db",
            engine="whatsmeow",
            engine_hosts=2,
            engine_connect_timeout=60.0,
        )
        gateway = api.app.state.gateway  # type: ignore[union-attr]
        engine = gateway.engine
        tenant = await api.tenant()
        sessions = [await linked_account(api, tenant, f"55119000000{n}") for n in range(4)]
        # Connected in the database with no session behind them: the node finds them within a
        # second and reopens them from their credentials, as it does after a failover.
        linking = (await api.account(tenant, label="linking"))["id"]
        await api.link(tenant, linking)
        before = await until(lambda: _all_placed(engine, {*sessions, linking}))

        victim = next(i for i, accounts in enumerate(before) if linking in accounts)
        lost = before[victim] - {linking}
        kept = before[1 - victim]
        assert lost, "the killed host must hold at least one session"
        # Restoration reads the credentials again: one lost account has none any more.
        gone = sorted(lost)[0]
        await gateway.auth.delete(gone)

        answers: list[int] = []
        polling = asyncio.Event()

        async def poll() -> None:
            while not polling.is_set():
                answers.append((await api.http.get("/healthz")).status_code)
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        old_pid = engine.host_pids()[victim]
        os.kill(old_pid, signal.SIGKILL)

        async def restored() -> list[set[str]] | None:
            pid = engine.host_pids()[victim]
            if pid == old_pid or not engine.healthy():
                return None
            now = await held(engine)
            return now if now[victim] == lost - {gone} else None

        after = await until(restored)
        polling.set()
        await poller

        assert after[1 - victim] == kept  # the other host's sessions never noticed
        assert answers and set(answers) == {200}
        for account_id in lost - {gone}:
            account = await api.get_account(tenant, account_id)
            assert account["status"] == "reconnecting"
        missing = await api.wait_status(tenant, gone, "logged_out")
        assert missing["status_reason"] == "credentials_missing"
        for account_id in kept:
            assert (await api.get_account(tenant, account_id))["status"] == "reconnecting"
        attempt = (await api.attempts(tenant, linking))[0]
        assert (attempt["outcome"], attempt["reason"]) == ("failed", "engine_host_died")
        assert (await api.get_account(tenant, linking))["status"] == "unlinked"


async def _all_placed(engine: Any, accounts: set[str]) -> list[set[str]] | None:
    now = await held(engine)
    return now if set().union(*now) == accounts else None
