"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from wagate.engine_events import Live
from wagate.models import Account, LinkAttempt, Workspace

Phone = Annotated[
    str,
    StringConstraints(pattern=r"^[1-9][0-9]{6,14}$"),
    Field(
        description="International number, digits only, 7–15 digits, no leading 0.",
        examples=["5511999990000"],
    ),
]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# WhatsApp's own limit for a text message body (Cloud API: 4096 characters).
MessageText = Annotated[str, Field(min_length=1, max_length=4096, examples=["Hello from wagate"])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["account not found"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class WorkspaceCreate(Strict):
    name: Label = Field(examples=["Acme CRM"])
    webhook_url: AnyHttpUrl | None = Field(default=None, examples=["https://crm.example/hooks"])


class WorkspaceUpdate(Strict):
    """Only the fields sent change; ``webhook_url: null`` turns webhooks off."""

    webhook_url: AnyHttpUrl | None = Field(default=None, examples=["https://crm.example/hooks"])
    webhook_format: Literal["wagate", "blazz"] | None = None
    link_policy: Literal["replace", "reject"] | None = None

    @model_validator(mode="after")
    def _only_url_may_be_null(self) -> WorkspaceUpdate:
        for name in ("webhook_format", "link_policy"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class WorkspaceOut(BaseModel):
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
    api_key: str = Field(description="Shown once; store it now.")
    webhook_secret: str = Field(description="Shown once; verifies webhook signatures.")


class AccountCreate(Strict):
    label: Label = Field(examples=["Sales line"])
    workspace_id: str | None = Field(
        default=None, max_length=36, description="Only with the admin key: the target workspace."
    )


class AccountOut(BaseModel):
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

    @classmethod
    def of(cls, account: Account) -> AccountOut:
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
        )


class LinkRequest(Strict):
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
    attempt_id: str
    code: str = Field(description="The QR payload; render it or use ?format=png|svg|txt.")
    index: int = Field(description="0 for the first code of the attempt, up to 5.")
    expires_at: datetime


class ScanRequest(Strict):
    code: str = Field(min_length=1, max_length=1024, description="The QR string or pairing code.")
    phone: Phone


class SimMessageRequest(Strict):
    sender: Phone = Field(alias="from", description="The simulated phone that sends.")
    to: Phone = Field(description="The number of the linked account that receives.")
    text: MessageText


class ScanOut(BaseModel):
    result: Literal["linked", "expired_code", "try_again_later", "invalid_code", "wrong_phone"]


class Health(BaseModel):
    status: Literal["ok"]


class EventOut(BaseModel):
    """An event's envelope (contract), the same in webhooks, polling and SSE."""

    id: int
    type: str = Field(examples=["account.status"])
    # The envelope's own ISO 8601 text, byte for byte what webhooks carry.
    created_at: str = Field(examples=["2026-01-01T12:00:00.000000+00:00"])
    workspace_id: str
    account_id: str | None
    seq: int | None = Field(description="Increases by one per event of the account.")
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    next_after: int = Field(description="Pass as ``after`` to read on.")


class FaultsRequest(Strict):
    phone: Phone | None = Field(default=None, description="Omit to change the global faults.")
    outage: bool | None = None
    expire_scans: bool | None = None
    logout_after_pair: bool | None = None
    slow_pairing: float | None = Field(default=None, ge=0, le=3600)
    flapping: bool | None = None


class FaultsOut(BaseModel):
    phone: str | None
    outage: bool
    expire_scans: bool
    logout_after_pair: bool
    slow_pairing: float
    flapping: bool


class DevicesOut(BaseModel):
    devices: int = Field(description="Linked devices of the phone that were affected.")
