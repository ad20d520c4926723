"""schemathesis against ``/openapi.json``, in-process over ASGI on SQLite: every operation gets
generated valid and invalid requests, with a workspace key and with the admin key; no answer may
be a 5xx or break the document's own promises (status codes, content types, schemas, headers).

Each case is sent twice: with the workspace key as generated (random ids: mostly 404, which
must still be the documented error body), and with the admin key and the ids of real
resources (a connected account, its message, the workspace, a key), so the success paths are
exercised too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi

from tests.conftest import ADMIN_KEY
from wagate.api.app import create_app
from wagate.config import Settings

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PHONE = "5511999990501"
# 15 keeps CI fast; WAGATE_FUZZ_EXAMPLES=200 digs deeper locally.
MAX_EXAMPLES = int(os.environ.get("WAGATE_FUZZ_EXAMPLES", "15"))
# Real ids would make these end the test's resources for every later case.
DESTRUCTIVE = {
    ("DELETE", "/v1/accounts/{account_id}"),
    ("POST", "/v1/accounts/{account_id}/logout"),
    ("POST", "/v1/accounts/{account_id}/stop"),
    ("DELETE", "/v1/workspaces/{workspace_id}/keys/{key_id}"),
    ("POST", "/v1/sim/phones/{phone}/logout"),
}
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
# Streams never end by themselves; with a real account the answer would be an endless stream.
STREAMS = {("GET", "/v1/accounts/{account_id}/events")}


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _world(app: Any) -> dict[str, Any]:
    """A workspace with a connected account and a sent message, made through the API."""
    client = asgi.get_client(app)
    created = _ok(client.post("/v1/workspaces", json={"name": "fuzz"}, headers=ADMIN), 201)
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    account = _ok(client.post("/v1/accounts", json={"label": "line"}, headers=auth), 201)
    path = f"/v1/accounts/{account['id']}"
    _ok(client.post(f"{path}/link", json={"method": "qr"}, headers=auth), 202)
    deadline = time.monotonic() + 10
    while (qr := client.get(f"{path}/qr", headers=auth)).status_code != 200:
        assert time.monotonic() < deadline, qr.text
        time.sleep(0.01)
    scan = {"code": qr.json()["code"], "phone": PHONE}
    assert _ok(client.post("/v1/sim/scan", json=scan, headers=auth))["result"] == "linked"
    while _ok(client.get(path, headers=auth))["status"] != "connected":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    body = {"to": "5511988887777", "text": "hi"}
    message = _ok(client.post(f"{path}/messages", json=body, headers=auth), 202)
    key = _ok(client.post(f"/v1/workspaces/{created['id']}/keys", headers=ADMIN), 201)
    return {
        "auth": auth,
        "ids": {
            "workspace_id": created["id"],
            "account_id": account["id"],
            "message_id": message["id"],
            "key_id": key["id"],
            "phone": PHONE,
        },
    }


@pytest.fixture
def api_schema(tmp_path: Path) -> Any:
    settings_ = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/fuzz.db",
        engine="sim",
        sim_time_scale=0.01,
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        link_rate_per_account="off",  # type: ignore[arg-type]
        link_rate_per_workspace="off",  # type: ignore[arg-type]
    )
    # schemathesis runs the app's lifespan (the gateway) in its own event loop thread and ends
    # it when the test ends; the test itself is synchronous.
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings_))


def _run(operation: Any, mode: GenerationMode, world: dict[str, Any]) -> None:
    checks = [getattr(schemathesis.checks, name) for name in CHECKS]
    route = (operation.method.upper(), operation.path)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=world["auth"], checks=checks)
        if route in DESTRUCTIVE or route in STREAMS:
            return
        real = {k: v for k, v in world["ids"].items() if k in (case.path_parameters or {})}
        if real:
            case.path_parameters = {**case.path_parameters, **real}
        case.call_and_validate(headers=ADMIN, checks=checks)

    run()


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    for inner in getattr(exc, "exceptions", ()):
        parts.append(_describe(inner))
    return "\n".join(parts)


# schemathesis's own strategies draw from `random` (its warning, not ours).
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_no_server_errors_and_no_schema_violations(api_schema: Any) -> None:
    world = _world(api_schema.app)
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _run(operation, mode, world)
            except Unsatisfiable:
                pass  # nothing in the operation can be made invalid (no parameters, no body)
            except (Exception, BaseExceptionGroup) as exc:  # run all; report every failure
                failures.append(f"{operation.label} [{mode.value}]: {_describe(exc)}"[:3000])
    assert not failures, "\n\n".join(failures)
