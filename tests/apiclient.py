"""A small test client that speaks wagate's HTTP API the way a user's backend would."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI


@dataclass
class Tenant:
    id: str
    key: str
    webhook_secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class ApiClient:
    def __init__(self, http: httpx.AsyncClient, app: FastAPI | None, admin_key: str) -> None:
        self.http = http
        self.app = app
        self.admin = {"Authorization": f"Bearer {admin_key}"}

    async def tenant(self, name: str = "acme", **body: Any) -> Tenant:
        r = await self.http.post("/v1/workspaces", json={"name": name, **body}, headers=self.admin)
        assert r.status_code == 201, r.text
        data = r.json()
        return Tenant(data["id"], data["api_key"], data["webhook_secret"])

    async def account(self, tenant: Tenant, label: str = "line") -> dict[str, Any]:
        r = await self.http.post("/v1/accounts", json={"label": label}, headers=tenant.auth)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def get_account(self, tenant: Tenant, account_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/v1/accounts/{account_id}", headers=tenant.auth)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def link(self, tenant: Tenant, account_id: str, **body: Any) -> dict[str, Any]:
        r = await self.http.post(
            f"/v1/accounts/{account_id}/link", json=body or {"method": "qr"}, headers=tenant.auth
        )
        assert r.status_code == 202, r.text
        return r.json()  # type: ignore[no-any-return]

    async def cancel(self, tenant: Tenant, account_id: str) -> dict[str, Any]:
        r = await self.http.delete(f"/v1/accounts/{account_id}/link", headers=tenant.auth)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def attempts(self, tenant: Tenant, account_id: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"/v1/accounts/{account_id}/attempts", headers=tenant.auth)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def qr(
        self, tenant: Tenant, account_id: str, *, after_index: int = -1, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The current QR code once one with an index above ``after_index`` is shown."""
        deadline = time.monotonic() + timeout
        while True:
            r = await self.http.get(f"/v1/accounts/{account_id}/qr", headers=tenant.auth)
            if r.status_code == 200 and r.json()["index"] > after_index:
                return r.json()  # type: ignore[no-any-return]
            assert r.status_code in (200, 404), r.text
            if time.monotonic() > deadline:
                raise AssertionError(f"no QR code after index {after_index}: {r.text}")
            await asyncio.sleep(0.01)

    async def scan(self, tenant: Tenant, code: str, phone: str) -> str:
        r = await self.http.post(
            "/v1/sim/scan", json={"code": code, "phone": phone}, headers=tenant.auth
        )
        assert r.status_code == 200, r.text
        return r.json()["result"]  # type: ignore[no-any-return]

    async def wait_status(
        self, tenant: Tenant, account_id: str, status: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            account = await self.get_account(tenant, account_id)
            if account["status"] == status:
                return account
            if time.monotonic() > deadline:
                raise AssertionError(f"account stayed {account['status']}, wanted {status}")
            await asyncio.sleep(0.01)

    async def link_phone(self, tenant: Tenant, account_id: str, phone: str) -> dict[str, Any]:
        """Link by QR, scan with ``phone``, wait until connected. The sim clock runs 100x fast
        here, so on a busy machine the code read can rotate away before the scan: then the
        current code (of the same attempt, or of a new one) is scanned again."""
        for _ in range(5):
            await self.link(tenant, account_id)
            code = await self.qr(tenant, account_id)
            result = await self.scan(tenant, code["code"], phone)
            if result != "expired_code":
                break
        assert result == "linked", result
        return await self.wait_status(tenant, account_id, "connected")
