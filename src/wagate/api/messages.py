"""Sending messages and reading their status (DESIGN §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from wagate.api import forward
from wagate.api.deps import CallerDep, GatewayDep, ManagerDep, SessionDep
from wagate.api.schemas import NO_NUL, ErrorBody, MessageText
from wagate.core.statuses import MessageDirection, MessageStatus
from wagate.db.models import Message
from wagate.errors import SessionMoving
from wagate.services import messages
from wagate.sessions import sending

Recipient = Annotated[
    str,
    StringConstraints(
        pattern=r"^([1-9][0-9]{6,14}|[0-9]{5,20}(-[0-9]{1,20})?@(s\.whatsapp\.net|g\.us))$"
    ),
    Field(
        description="A phone number (digits only, 7–15, no leading 0) or a WhatsApp JID.",
        examples=["5511999990000"],
    ),
]


class MessageCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"to": "5511999990000", "text": "Hello!", "client_ref": "order-1042"}]
        },
    )

    to: Recipient
    text: MessageText
    client_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=NO_NUL,
        description="Your idempotency key: the same value returns the first message again.",
        examples=["order-1042"],
    )


class MessageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c0c52-0f4e-4d7f-9c1e-2f0a8e1f4b11",
                    "account_id": "0b6d3c1e-5a0b-4c55-8f0e-0b4e4a6f2d10",
                    "direction": "out",
                    "chat": "5511999990000",
                    "wa_id": "3EB0A1B2C3D4E5F60718",
                    "text": "Hello!",
                    "status": "delivered",
                    "client_ref": "order-1042",
                    "created_at": "2026-01-01T12:00:00Z",
                    "updated_at": "2026-01-01T12:00:02Z",
                    "sent_at": "2026-01-01T12:00:01Z",
                    "delivered_at": "2026-01-01T12:00:02Z",
                    "read_at": None,
                }
            ]
        }
    )

    id: str
    account_id: str
    direction: MessageDirection
    chat: str = Field(description="The recipient (sent) or the chat it came from (received).")
    wa_id: str | None = Field(description="WhatsApp's id, once the engine has taken it.")
    text: str
    status: MessageStatus
    client_ref: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls.model_validate(message, from_attributes=True)


router = APIRouter(
    prefix="/v1/accounts/{account_id}/messages",
    tags=["messages"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        404: {"model": ErrorBody, "description": "No such account or message for this key"},
        422: {"model": ErrorBody, "description": "Invalid input"},
    },
)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MessageOut,
    responses={
        409: {"model": ErrorBody, "description": "The account is not connected"},
        503: {
            "model": ErrorBody,
            "description": "The engine could not take the message, or the account's session "
            "is moving between nodes for longer than a send waits (`session_moving`)",
        },
    },
)
async def send_message(
    account_id: str,
    body: MessageCreate,
    caller: CallerDep,
    manager: ManagerDep,
    gateway: GatewayDep,
    request: Request,
) -> MessageOut | Response:
    """Send a text. The answer is the queued message; its status then moves to ``sent``,
    ``delivered`` and ``read`` (``message.status`` events). A ``client_ref`` seen before
    returns that message instead of sending again. Through any node: the node serving the
    account sends it."""
    for _ in range(forward.MOVES):
        carried = await forward.to_owner(request, gateway, account_id)
        if carried is not None:
            return carried
        try:
            message = await sending.send(
                manager, caller, account_id, body.to, body.text, client_ref=body.client_ref
            )
            return MessageOut.of(message)
        except SessionMoving:
            if forward.was_carried(request):
                raise  # the node that carried it here asks the next owner
            await manager.moved(account_id)
    raise SessionMoving("the account's session is moving between nodes; retry in a moment")


@router.get("/{message_id}", response_model=MessageOut)
async def read_message(
    account_id: str, message_id: str, caller: CallerDep, session: SessionDep
) -> MessageOut:
    """A sent or received message and its current status."""
    return MessageOut.of(await messages.get_message(session, caller, account_id, message_id))
