"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    UrlConstraints,
    model_validator,
)

from wagate.core.statuses import LinkPolicy, WebhookFormat
from wagate.db.models import Account, LinkAttempt, Workspace
from wagate.sessions.context import Live

Phone = Annotated[
    str,
    StringConstraints(pattern=r"^[1-9][0-9]{6,14}$"),
    Field(
        description="International number, digits only, 7–15 digits, no leading 0.",
        examples=["5511999990000"],
    ),
]


def _fits_column(url: AnyHttpUrl) -> AnyHttpUrl:
    # Measured once encoded: "é" in a path becomes "%C3%A9", six characters for one.
    if len(str(url)) > 2048:
        raise ValueError("URL longer than 2048 characters (once percent-encoded)")
    return url


WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048), AfterValidator(_fits_column)]
# PostgreSQL text cannot hold NUL: refused here as a 422, never a driver error (a 500).
NO_NUL = r"^[^\x00]*$"
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL),
]
# WhatsApp's own limit for a text message body (Cloud API: 4096 characters).
MessageText = Annotated[
    str, Field(min_length=1, max_length=4096, pattern=NO_NUL, examples=["Hello from wagate"])
]


def example(*values: dict[str, JsonValue]) -> ConfigDict:
    """OpenAPI examples of a model: every route documents its bodies and answers with one."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


_WORKSPACE: dict[str, JsonValue] = {
    "id": "9a7e4c2b-1d3f-4e5a-b6c7-d8e9f0a1b2c3",
    "name": "Acme CRM",
    "webhook_url": "https://crm.example/hooks",
    "webhook_format": "wagate",
    "link_policy": "replace",
    "created_at": "2026-01-01T12:00:00Z",
}
_ACCOUNT: dict[str, JsonValue] = {
    "id": "0b6d3c1e-5a0b-4c55-8f0e-0b4e4a6f2d10",
    "workspace_id": "9a7e4c2b-1d3f-4e5a-b6c7-d8e9f0a1b2c3",
    "label": "Sales line",
    "provider": "web",
    "status": "connected",
    "status_reason": None,
    "phone": "5511999990000",
    "jid": "5511999990000:12@s.whatsapp.net",
    "linked_at": "2026-01-01T12:00:00Z",
    "last_seen_at": "2026-01-01T12:00:00Z",
    "created_at": "2026-01-01T12:00:00Z",
    "node": "gw-a",
}
_ATTEMPT: dict[str, JsonValue] = {
    "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "account_id": "0b6d3c1e-5a0b-4c55-8f0e-0b4e4a6f2d10",
    "method": "code",
    "state": "open",
    "started_at": "2026-01-01T12:00:00Z",
    "first_qr_at": "2026-01-01T12:00:00Z",
    "qr_count": 0,
    "paired_at": None,
    "connected_at": None,
    "ended_at": None,
    "outcome": None,
    "reason": None,
    "pair_code": "ABCD-1234",
}
_EVENT: dict[str, JsonValue] = {
    "id": 42,
    "type": "account.status",
    "created_at": "2026-01-01T12:00:00.000000+00:00",
    "workspace_id": "9a7e4c2b-1d3f-4e5a-b6c7-d8e9f0a1b2c3",
    "account_id": "0b6d3c1e-5a0b-4c55-8f0e-0b4e4a6f2d10",
    "seq": 3,
    "data": {"from": "pairing", "status": "connected", "reason": None},
}


# Event ids are 64-bit on every backend: a larger cursor is a 422, never an overflow in the driver.
MAX_EVENT_ID = 2**63 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["account not found"])


class ErrorBody(BaseModel):
    model_config = example({"error": {"code": "not_found", "message": "account not found"}})

    error: ErrorDetail


class WorkspaceCreate(Strict):
    model_config = example({"name": "Acme CRM", "webhook_url": "https://crm.example/hooks"})

    name: Label = Field(examples=["Acme CRM"])
    webhook_url: WebhookUrl | None = Field(default=None, examples=["https://crm.example/hooks"])


class WorkspaceUpdate(Strict):
    """Only the fields sent change; ``webhook_url: null`` turns webhooks off."""

    model_config = example({"webhook_format": "wagate", "link_policy": "replace"})

    webhook_url: WebhookUrl | None = Field(default=None, examples=["https://crm.example/hooks"])
    webhook_format: WebhookFormat | None = None
    link_policy: LinkPolicy | None = None

    @model_validator(mode="after")
    def _only_url_may_be_null(self) -> WorkspaceUpdate:
        for name in ("webhook_format", "link_policy"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class WorkspaceOut(BaseModel):
    model_config = example(_WORKSPACE)

    id: str
    name: str
    webhook_url: str | None
    webhook_format: str
    link_policy: str
    created_at: datetime

    @classmethod
    def of(cls, workspace: Workspace) -> WorkspaceOut:
        return cls(
            id=workspace.id,
            name=workspace.name,
            webhook_url=workspace.webhook_url,
            webhook_format=workspace.webhook_format,
            link_policy=workspace.link_policy,
            created_at=workspace.created_at,
        )


class WorkspaceCreated(WorkspaceOut):
    model_config = example(
        {**_WORKSPACE, "api_key": "wg_Zk3qP9aB...", "webhook_secret": "whsec_..."}
    )

    api_key: str = Field(description="Shown once; store it now.")
    webhook_secret: str = Field(description="Shown once; verifies webhook signatures.")


class AccountCreate(Strict):
    model_config = example({"label": "Sales line"})

    label: Label = Field(examples=["Sales line"])
    workspace_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        pattern=NO_NUL,
        description="Only with the admin key: the target workspace.",
    )


class AccountOut(BaseModel):
    model_config = example(_ACCOUNT)

    id: str
    workspace_id: str
    label: str
    provider: str
    status: str
    status_reason: str | None
    phone: str | None
    jid: str | None
    linked_at: datetime | None
    last_seen_at: datetime | None
    created_at: datetime
    node: str | None = Field(
        description="The gateway node serving the account's session or attempt, if any."
    )

    @classmethod
    def of(cls, account: Account, node: str | None) -> AccountOut:
        return cls(
            id=account.id,
            workspace_id=account.workspace_id,
            label=account.label,
            provider=account.provider,
            status=account.status,
            status_reason=account.status_reason,
            phone=account.phone,
            jid=account.jid,
            linked_at=account.linked_at,
            last_seen_at=account.last_seen_at,
            created_at=account.created_at,
            node=node,
        )


class LinkRequest(Strict):
    model_config = example({"method": "qr"}, {"method": "code", "phone": "5511999990000"})

    method: Literal["qr", "code"] = Field(examples=["qr"])
    phone: Phone | None = Field(default=None, description="Required for method 'code'.")

    @model_validator(mode="after")
    def _phone_matches_method(self) -> LinkRequest:
        if self.method == "code" and self.phone is None:
            raise ValueError("method 'code' needs the phone number that will enter the code")
        if self.method == "qr" and self.phone is not None:
            raise ValueError("method 'qr' takes no phone: the phone that scans decides")
        return self


class AttemptOut(BaseModel):
    model_config = example(_ATTEMPT)

    id: str
    account_id: str
    method: str
    state: Literal["open", "ended"]
    started_at: datetime
    first_qr_at: datetime | None
    qr_count: int
    paired_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    reason: str | None
    pair_code: str | None = Field(default=None, description="While open, for method 'code'.")

    @classmethod
    def of(cls, attempt: LinkAttempt, live: Live | None = None) -> AttemptOut:
        pair_code = None
        if attempt.ended_at is None and live is not None and live.attempt_id == attempt.id:
            pair_code = live.pair_code.code if live.pair_code is not None else None
        return cls(
            id=attempt.id,
            account_id=attempt.account_id,
            method=attempt.method,
            state="open" if attempt.ended_at is None else "ended",
            started_at=attempt.started_at,
            first_qr_at=attempt.first_qr_at,
            qr_count=attempt.qr_count,
            paired_at=attempt.paired_at,
            connected_at=attempt.connected_at,
            ended_at=attempt.ended_at,
            outcome=attempt.outcome,
            reason=attempt.reason,
            pair_code=pair_code,
        )


class QrOut(BaseModel):
    model_config = example(
        {
            "attempt_id": "0b6d3c1e-5a0b-4c55-8f0e-0b4e4a6faa11",
            "code": "2@Xq3...,Ab9...,Cd7...,Ef5...",
            "index": 0,
            "expires_at": "2026-01-01T12:00:00Z",
        }
    )

    attempt_id: str
    code: str = Field(description="The QR payload; render it or use ?format=png|svg|txt.")
    index: int = Field(description="0 for the first code of the attempt, up to 5.")
    expires_at: datetime


class ScanRequest(Strict):
    model_config = example(
        {"code": "2@Xq3...,Ab9...,Cd7...,Ef5...", "phone": "5511999990000"},
        {"code": "ABCD-1234", "phone": "5511999990000"},
    )

    code: str = Field(
        min_length=1,
        max_length=1024,
        pattern=NO_NUL,
        description="The QR string or pairing code.",
    )
    phone: Phone


class SimMessageRequest(Strict):
    model_config = example({"from": "5511988887777", "to": "5511999990000", "text": "Hello!"})

    sender: Phone = Field(alias="from", description="The simulated phone that sends.")
    to: Phone = Field(description="The number of the linked account that receives.")
    text: MessageText
    count: int = Field(
        default=1, ge=1, le=1000, description="How many such messages arrive at once (a burst)."
    )


class ScanOut(BaseModel):
    model_config = example({"result": "linked"})

    result: Literal["linked", "expired_code", "try_again_later", "invalid_code", "wrong_phone"]


class Health(BaseModel):
    model_config = example({"status": "ok"})

    status: Literal["ok"]


class EventOut(BaseModel):
    """An event's envelope (contract), the same in webhooks, polling and SSE."""

    model_config = example(_EVENT)

    id: int
    type: str = Field(examples=["account.status"])
    # The envelope's own ISO 8601 text, byte for byte what webhooks carry.
    created_at: str = Field(examples=["2026-01-01T12:00:00.000000+00:00"])
    workspace_id: str
    account_id: str | None
    seq: int | None = Field(description="Increases by one per event of the account.")
    data: dict[str, Any]


class EventPage(BaseModel):
    model_config = example({"events": [_EVENT], "next_after": 42})

    events: list[EventOut]
    next_after: int = Field(description="Pass as ``after`` to read on.")


class FaultsRequest(Strict):
    model_config = example({"phone": "5511999990000", "outage": True})

    phone: Phone | None = Field(default=None, description="Omit to change the global faults.")
    outage: bool | None = None
    expire_scans: bool | None = None
    logout_after_pair: bool | None = None
    slow_pairing: float | None = Field(default=None, ge=0, le=3600)
    flapping: bool | None = None


class FaultsOut(BaseModel):
    model_config = example(
        {
            "phone": "5511999990000",
            "outage": True,
            "expire_scans": False,
            "logout_after_pair": False,
            "slow_pairing": 0.0,
            "flapping": False,
        }
    )

    phone: str | None
    outage: bool
    expire_scans: bool
    logout_after_pair: bool
    slow_pairing: float
    flapping: bool


class DevicesOut(BaseModel):
    model_config = example({"devices": 1})

    devices: int = Field(description="Linked devices of the phone that were affected.")


class SimStatsOut(BaseModel):
    model_config = example(
        {"devices": 300, "connected": 298, "peak_connections_per_device": 1, "replaced_total": 0}
    )

    devices: int = Field(description="Linked devices not logged out.")
    connected: int = Field(description="Devices with a live connection now.")
    peak_connections_per_device: int = Field(
        description="The most connections one device ever had at once (1 unless a device was "
        "opened twice, e.g. from two nodes)."
    )
    replaced_total: int = Field(
        description="Connections closed because the same device connected again."
    )
