"""Linking by pairing code: the 202 carries the code, the simulated phone types it."""

from __future__ import annotations

import re

import pytest

from tests.apiclient import ApiClient

PHONE = "5511999990201"
CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")


async def test_pairing_code_links_end_to_end(api: ApiClient) -> None:
    tenant = await api.tenant()
    account = await api.account(tenant)

    attempt = await api.link(tenant, account["id"], method="code", phone=PHONE)
    assert attempt["method"] == "code" and attempt["state"] == "open"
    # The link call waited for the engine's code: no polling needed.
    assert attempt["pair_code"] and CODE.match(attempt["pair_code"]), attempt
    again = await api.link(tenant, account["id"], method="code", phone=PHONE)
    assert (again["id"], again["pair_code"]) == (attempt["id"], attempt["pair_code"])
    [listed] = await api.attempts(tenant, account["id"])
    assert listed["pair_code"] == attempt["pair_code"]
    # No QR code for a code attempt.
    r = await api.http.get(f"/v1/accounts/{account['id']}/qr", headers=tenant.auth)
    assert r.status_code == 404

    pair = {"code": attempt["pair_code"], "phone": "5511999990999"}
    r = await api.http.post("/v1/sim/pair", json=pair, headers=tenant.auth)
    assert r.json() == {"result": "wrong_phone"}, r.text
    pair["phone"] = PHONE
    r = await api.http.post("/v1/sim/pair", json=pair, headers=tenant.auth)
    assert r.json() == {"result": "linked"}, r.text

    linked = await api.wait_status(tenant, account["id"], "connected")
    assert linked["phone"] == PHONE
    [done] = await api.attempts(tenant, account["id"])
    assert done["outcome"] == "linked" and done["method"] == "code"
    assert done["pair_code"] is None  # shown only while the attempt is open
    r = await api.http.post("/v1/sim/pair", json=pair, headers=tenant.auth)
    assert r.json() == {"result": "expired_code"}, r.text


@pytest.mark.parametrize(
    "phone",
    [
        "0123456789",  # leading 0
        "123456",  # 6 digits
        "1234567890123456",  # 16 digits
        "+5511999990000",
        "55 11 99999 0000",
        "5511-99999-0000",
        "55119999x0000",
        "",
        5511999990000,
        None,
    ],
)
async def test_invalid_phone_is_422(gateway_factory, fresh_database_url, phone: object) -> None:  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"))
    tenant = await api.tenant()
    account = await api.account(tenant)
    r = await api.http.post(
        f"/v1/accounts/{account['id']}/link",
        json={"method": "code", "phone": phone},
        headers=tenant.auth,
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error" and error["message"]
    assert await api.attempts(tenant, account["id"]) == []


async def test_shortest_and_longest_phones_are_accepted(gateway_factory, fresh_database_url):  # type: ignore[no-untyped-def]
    api = await gateway_factory(await fresh_database_url("sqlite"))
    tenant = await api.tenant()
    for phone in ("1234567", "123456789012345"):
        account = await api.account(tenant, phone)
        attempt = await api.link(tenant, account["id"], method="code", phone=phone)
        assert CODE.match(attempt["pair_code"] or ""), attempt
