"""What each terminal engine event does to a connected account, through the real manager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tests.apiclient import ApiClient
from wagate.engines import base as ev

CASES = [
    (ev.LoggedOut("logged_out_from_phone"), "logged_out", "logged_out_from_phone"),
    (ev.Replaced(), "failed", "stream_replaced"),
    (ev.Banned("401", datetime.now(UTC) + timedelta(days=1)), "failed", "banned"),
    (ev.Outdated(), "failed", "client_outdated"),
    (ev.ConnectFailed("unauthorized", retryable=False), "failed", "unauthorized"),
    (ev.Disconnected("connection_lost", will_retry=True), "reconnecting", "connection_lost"),
    (ev.Disconnected("closed", will_retry=False), "stopped", "closed"),
]


@pytest.mark.parametrize(
    ("event", "status", "reason"),
    CASES,
    ids=[type(c[0]).__name__ + str(i) for i, c in enumerate(CASES)],
)
async def test_event_moves_connected_account(  # type: ignore[no-untyped-def]
    gateway_factory, fresh_database_url, event, status, reason
) -> None:
    api: ApiClient = await gateway_factory(await fresh_database_url("sqlite"))
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], "5511999990020")
    assert api.app is not None
    manager = api.app.state.gateway.sessions
    await manager.apply(account["id"], event)
    after = await api.get_account(tenant, account["id"])
    assert (after["status"], after["status_reason"]) == (status, reason)
    has_credentials = await api.app.state.gateway.auth.load(account["id"]) is not None
    assert has_credentials == (status != "logged_out")


async def test_outdated_during_link_fails_the_attempt(gateway_factory, fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    api: ApiClient = await gateway_factory(await fresh_database_url("sqlite"))
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link(tenant, account["id"])
    assert api.app is not None
    await api.app.state.gateway.sessions.apply(account["id"], ev.Outdated())
    after = await api.get_account(tenant, account["id"])
    assert (after["status"], after["status_reason"]) == ("failed", "client_outdated")
    [attempt] = await api.attempts(tenant, account["id"])
    assert (attempt["outcome"], attempt["reason"]) == ("failed", "client_outdated")


async def test_an_event_is_applied_again_while_the_database_is_out_of_reach(  # type: ignore[no-untyped-def]
    gateway_factory, fresh_database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool that gives no connection in time (a busy PostgreSQL) must not drop the event."""
    api: ApiClient = await gateway_factory(await fresh_database_url("sqlite"))
    tenant = await api.tenant()
    account = await api.account(tenant)
    await api.link_phone(tenant, account["id"], "5511999990021")
    assert api.app is not None
    manager = api.app.state.gateway.sessions
    real_apply = manager.apply
    failures = [PoolTimeout("QueuePool limit reached"), PoolTimeout("QueuePool limit reached")]

    async def flaky_apply(account_id: str, event: ev.EngineEvent) -> None:
        if failures:
            raise failures.pop()
        await real_apply(account_id, event)

    monkeypatch.setattr(manager, "apply", flaky_apply)
    manager._on_engine_event(account["id"], ev.Disconnected("connection_lost", will_retry=True))
    await manager.settle()
    assert failures == []
    after = await api.get_account(tenant, account["id"])
    assert (after["status"], after["status_reason"]) == ("reconnecting", "connection_lost")
