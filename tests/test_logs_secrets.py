"""No secret of a run is in its logs: QR codes, pairing codes, API keys, the admin key, webhook
secrets, credentials. Checked on everything logged in-process at DEBUG, and on the stderr of a
real ``wagate serve --log-format json``, where every line must be one JSON object."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apiclient import ApiClient, Tenant
from tests.conftest import ADMIN_KEY
from tests.serve import Server
from wagate.logs import JsonFormatter, TextFormatter

PHONES = ("5511999990501", "5511999990502", "5511999990503")


async def events(api: ApiClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    r = await api.http.get("/v1/events", params={"limit": 1000}, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["events"]  # type: ignore[no-any-return]


async def pair_code(api: ApiClient, tenant: Tenant, account_id: str) -> str:
    for _ in range(1000):
        [attempt, *_] = await api.attempts(tenant, account_id)
        if attempt["pair_code"]:
            return attempt["pair_code"]  # type: ignore[no-any-return]
        await asyncio.sleep(0.01)
    raise AssertionError("no pairing code")


async def run(api: ApiClient) -> set[str]:
    """A whole run: tenants, keys, links by QR (with a rotation, a cancel, a bad scan) and by
    pairing code, streams and polls; returns every secret it saw."""
    tenant = await api.tenant("acme", webhook_url="http://127.0.0.1:9/hook")
    other = await api.tenant("other")
    qr_account = await api.account(tenant, "qr")
    await api.link(tenant, qr_account["id"])
    await api.qr(tenant, qr_account["id"], after_index=0)
    await api.cancel(tenant, qr_account["id"])
    await api.link(tenant, qr_account["id"])
    code = (await api.qr(tenant, qr_account["id"]))["code"]
    assert await api.scan(tenant, code + "x", PHONES[0]) == "invalid_code"
    assert await api.scan(tenant, code, PHONES[0]) == "linked"
    await api.wait_status(tenant, qr_account["id"], "connected")
    for fmt in ("png", "svg", "txt"):
        r = await api.http.get(
            f"/v1/accounts/{qr_account['id']}/qr", params={"format": fmt}, headers=tenant.auth
        )
        assert r.status_code == 404  # the attempt is over: no code any more
    code_account = await api.account(tenant, "code")
    await api.link(tenant, code_account["id"], method="code", phone=PHONES[1])
    pairing = await pair_code(api, tenant, code_account["id"])
    r = await api.http.post(
        "/v1/sim/pair", json={"code": pairing, "phone": PHONES[2]}, headers=tenant.auth
    )
    assert r.json()["result"] == "wrong_phone"
    r = await api.http.post(
        "/v1/sim/pair", json={"code": pairing, "phone": PHONES[1]}, headers=tenant.auth
    )
    assert r.json()["result"] == "linked"
    await api.wait_status(tenant, code_account["id"], "connected")
    # Bad input carrying secrets: rejected, and the rejection is not logged with them.
    r = await api.http.post("/v1/sim/scan", json={"code": code, "phone": "0"}, headers=tenant.auth)
    assert r.status_code == 422
    r = await api.http.get("/v1/accounts", headers={"Authorization": f"Bearer {other.key}x"})
    assert r.status_code == 401

    log = await events(api, api.admin)
    codes = {e["data"]["code"] for e in log if e["type"] in ("link.qr", "link.pair_code")}
    assert code in codes and pairing in codes and len(codes) >= 3
    return {ADMIN_KEY, tenant.key, other.key, tenant.webhook_secret, other.webhook_secret, *codes}


def leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted(s for s in secrets if s in text)


async def test_no_secret_in_any_log_record(
    gateway_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLAlchemy keeps its loggers at WARNING unless asked: ask for every statement. (Its DEBUG
    # level adds result rows, which hold codes by design: an explicit choice, not wagate's.)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    caplog.set_level(logging.DEBUG)  # last: it also sets the capturing handler's level
    api = await gateway_factory(f"sqlite+aiosqlite:///{tmp_path}/logs.db")
    secrets = await run(api)
    assert api.app is not None
    gateway = api.app.state.gateway
    credentials = set()
    for account in (await api.http.get("/v1/accounts", headers=api.admin)).json():
        blob = await gateway.auth.load(account["id"])
        credentials.add(json.loads(blob)["secret"])
    assert len(credentials) == 2
    records = caplog.records
    assert any(r.name.startswith("wagate.") for r in records)
    assert any(r.name.startswith("sqlalchemy.engine") for r in records), "no SQL was logged"
    assert any(r.levelno == logging.DEBUG for r in records), "DEBUG was not captured"
    json_fmt, text_fmt = JsonFormatter(), TextFormatter()
    for record in records:
        for line in (json_fmt.format(record), text_fmt.format(record)):
            found = leaks(line, secrets | credentials)
            assert not found, f"{record.name}: {line[:300]}"


async def test_no_secret_in_serve_json_logs(tmp_path: Path) -> None:
    server = Server(
        f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        tmp_path / "data",
        env={"WAGATE_LOG_LEVEL": "DEBUG"},
    )
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            secrets = await run(ApiClient(http, None, ADMIN_KEY))
    finally:
        seconds = await asyncio.to_thread(server.terminate)
    assert seconds < 10
    assert server.log is not None
    lines = server.log.read_text().splitlines()
    assert len(lines) > 20
    messages = []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict), line
        assert {"ts", "level", "logger", "msg"} <= set(entry), line
        messages.append(entry["msg"])
        assert not leaks(line, secrets), line[:300]
    for expected in ("gateway started", "qr code issued", "phone paired", "gateway stopped"):
        assert expected in messages, expected
