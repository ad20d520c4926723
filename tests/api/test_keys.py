"""Workspace keys: created and shown once, listed without secrets, revoked at once (within 2 s on
another gateway process)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.apiclient import ApiClient
from wagate.core.caller import Caller
from wagate.db.models import ApiKey
from wagate.services import keys


async def test_create_list_revoke(api: ApiClient) -> None:
    tenant = await api.tenant()
    keys = f"/v1/workspaces/{tenant.id}/keys"
    r = await api.http.post(keys, headers=api.admin)
    assert r.status_code == 201, r.text
    created = r.json()
    new_key = created["api_key"]
    assert new_key.startswith(created["prefix"]) and len(new_key) > len(created["prefix"]) + 20
    assert created["revoked_at"] is None and created["workspace_id"] == tenant.id
    new_auth = {"Authorization": f"Bearer {new_key}"}
    r = await api.http.get(f"/v1/workspaces/{tenant.id}", headers=new_auth)
    assert r.status_code == 200, r.text

    r = await api.http.get(keys, headers=api.admin)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert [k["id"] for k in listed][-1] == created["id"] and len(listed) == 2
    assert all(
        set(k) == {"id", "workspace_id", "prefix", "created_at", "revoked_at"} for k in listed
    )
    digest = hashlib.sha256(new_key.encode()).hexdigest()
    for secret in (new_key, tenant.key, digest, new_key[len(created["prefix"]) :]):
        assert secret not in r.text

    # Stored as the SHA-256 hash and the prefix, never the key.
    async with api.app.state.gateway.db.read_sessions() as session:  # type: ignore[union-attr]
        row = (await session.execute(select(ApiKey).where(ApiKey.id == created["id"]))).scalar_one()
    assert row.key_hash == digest and row.prefix == created["prefix"]
    assert new_key not in repr(vars(row))

    r = await api.http.delete(f"{keys}/{created['id']}", headers=api.admin)
    assert r.status_code == 200, r.text
    revoked_at = r.json()["revoked_at"]
    assert revoked_at
    # Refused from the very next request; the workspace's other key still works.
    r = await api.http.get(f"/v1/workspaces/{tenant.id}", headers=new_auth)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"
    assert (await api.http.get("/v1/accounts", headers=new_auth)).status_code == 401
    assert (await api.http.get("/v1/accounts", headers=tenant.auth)).status_code == 200
    # Revoking again keeps the first time.
    r = await api.http.delete(f"{keys}/{created['id']}", headers=api.admin)
    assert r.status_code == 200 and r.json()["revoked_at"] == revoked_at
    listed = (await api.http.get(keys, headers=api.admin)).json()
    assert [k["revoked_at"] for k in listed if k["id"] == created["id"]] == [revoked_at]


async def test_key_routes_need_the_admin_key_and_stay_in_their_workspace(
    gateway_factory, fresh_database_url
) -> None:  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"))
    mine, other = await api.tenant("mine"), await api.tenant("other")
    other_key = (await api.http.post(f"/v1/workspaces/{other.id}/keys", headers=api.admin)).json()
    for method, path in (
        ("POST", f"/v1/workspaces/{mine.id}/keys"),
        ("GET", f"/v1/workspaces/{mine.id}/keys"),
        ("DELETE", f"/v1/workspaces/{other.id}/keys/{other_key['id']}"),
    ):
        r = await api.http.request(method, path, headers=mine.auth)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "admin_required"
        assert (await api.http.request(method, path)).status_code == 401
    # A key id under another workspace's path, or an unknown workspace: not found.
    r = await api.http.delete(f"/v1/workspaces/{mine.id}/keys/{other_key['id']}", headers=api.admin)
    assert r.status_code == 404, r.text
    for method in ("POST", "GET"):
        r = await api.http.request(method, "/v1/workspaces/nope/keys", headers=api.admin)
        assert r.status_code == 404, r.text
    other_auth = {"Authorization": f"Bearer {other_key['api_key']}"}
    assert (await api.http.get("/v1/accounts", headers=other_auth)).status_code == 200


async def test_a_key_revoked_by_another_gateway_is_refused_within_two_seconds(
    gateway_factory: Any, database_url: str
) -> None:
    here = await gateway_factory(database_url)
    there = await gateway_factory(database_url)
    tenant = await here.tenant()
    created = (await here.http.post(f"/v1/workspaces/{tenant.id}/keys", headers=here.admin)).json()
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    assert (await here.http.get("/v1/accounts", headers=auth)).status_code == 200  # now known here
    r = await there.http.delete(
        f"/v1/workspaces/{tenant.id}/keys/{created['id']}", headers=there.admin
    )
    assert r.status_code == 200
    assert (await there.http.get("/v1/accounts", headers=auth)).status_code == 401
    revoked = time.monotonic()
    while (await here.http.get("/v1/accounts", headers=auth)).status_code != 401:
        assert time.monotonic() - revoked < 2.5, "still accepted after the cache's 2 s"
        await asyncio.sleep(0.1)
    assert (await here.http.get("/v1/accounts", headers=tenant.auth)).status_code == 200


def test_key_cache_keeps_callers_for_its_ttl_and_forgets_revoked_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: clock[0])
    cache = keys.KeyCache(ttl=2.0, size=2)
    one, two = Caller(key_id="k1", workspace_id="w"), Caller(key_id="k2", workspace_id="w")
    cache.put("d1", one)
    cache.put("d2", two)
    assert cache.get("d1") == one and cache.get("unknown") is None
    cache.forget("k1")
    assert cache.get("d1") is None and cache.get("d2") == two
    clock[0] += 2.0
    assert cache.get("d2") is None  # expired
    for n in range(3):  # past its size it starts over rather than grow
        cache.put(f"x{n}", one)
    assert len(cache._entries) <= 2
