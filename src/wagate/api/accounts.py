"""Accounts, linking, QR codes and link attempts (DESIGN §6)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.api import forward
from wagate.api.deps import CallerDep, GatewayDep, ManagerDep, SessionDep
from wagate.api.schemas import (
    AccountCreate,
    AccountOut,
    AttemptOut,
    ErrorBody,
    LinkRequest,
    QrOut,
)
from wagate.core import qr
from wagate.core.states import AccountStatus, LinkMethod
from wagate.db.models import Account, utcnow
from wagate.engines.base import PairCode, QrCode
from wagate.errors import InvalidInput, NotFound
from wagate.services import accounts as account_service
from wagate.services import cluster
from wagate.services.accounts import get_account, list_accounts
from wagate.services.linking import list_attempts, shown_code
from wagate.sessions import commands, linking
from wagate.sessions.context import Live
from wagate.sessions.manager import SessionManager

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
    404: {"model": ErrorBody, "description": "No such account in the caller's workspace"},
    422: {"model": ErrorBody, "description": "Invalid input"},
}

# How long a pairing-code link waits for the engine's code before answering without it.
PAIR_CODE_WAIT = 2.0

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], responses=ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AccountOut)
async def create_account(body: AccountCreate, caller: CallerDep, gateway: GatewayDep) -> AccountOut:
    """Create an account slot, status ``unlinked``."""
    if caller.is_admin and body.workspace_id is None:
        raise InvalidInput("the admin key must name the account's workspace_id")
    workspace_id = body.workspace_id or caller.workspace_id
    assert workspace_id is not None

    account = await gateway.db.run(
        lambda session: account_service.create_account(session, caller, workspace_id, body.label)
    )
    return AccountOut.of(account, None)


async def _live(session: AsyncSession, manager: SessionManager, account_id: str) -> Live | None:
    """The code the account's open attempt shows: this node's own when it runs the attempt,
    else the newest one its events recorded (the attempt runs on another node)."""
    live = manager.live(account_id)
    if live is not None:
        return live
    shown = await shown_code(session, account_id, utcnow())
    if shown is None:
        return None
    if shown.method == LinkMethod.QR:
        return Live(shown.attempt_id, qr=QrCode(shown.code, shown.index, shown.expires_at))
    return Live(shown.attempt_id, pair_code=PairCode(shown.code, shown.expires_at))


async def _out(session: AsyncSession, accounts: list[Account]) -> list[AccountOut]:
    """Accounts as the API shows them, each with the node that serves it."""
    nodes = await cluster.owners(session, [a.id for a in accounts])
    return [AccountOut.of(a, nodes.get(a.id)) for a in accounts]


@router.get("", response_model=list[AccountOut])
async def get_accounts(
    caller: CallerDep,
    session: SessionDep,
    status_filter: Annotated[AccountStatus | None, Query(alias="status")] = None,
) -> list[AccountOut]:
    """The caller's accounts, optionally only those in one status."""
    return await _out(session, await list_accounts(session, caller, status_filter))


@router.get("/{account_id}", response_model=AccountOut)
async def read_account(account_id: str, caller: CallerDep, session: SessionDep) -> AccountOut:
    [out] = await _out(session, [await get_account(session, caller, account_id)])
    return out


@router.post(
    "/{account_id}/link",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AttemptOut,
    responses={
        409: {"model": ErrorBody, "description": "The account is already linked"},
        429: {
            "model": ErrorBody,
            "description": "Too many new link attempts (account or workspace); see Retry-After",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        },
    },
)
async def link(
    account_id: str, body: LinkRequest, caller: CallerDep, manager: ManagerDep
) -> AttemptOut:
    """Start linking, or return the attempt already open (idempotent). For method ``code`` the
    answer waits up to 2 s for the engine's pairing code, so it carries ``pair_code``."""
    attempt = await linking.link(manager, caller, account_id, LinkMethod(body.method), body.phone)
    if attempt.method == LinkMethod.CODE.value:
        await linking.wait_pair_code(manager, account_id, attempt.id, PAIR_CODE_WAIT)
    return AttemptOut.of(attempt, manager.live(account_id))


@router.delete("/{account_id}/link", response_model=AttemptOut)
async def cancel_link(
    account_id: str, caller: CallerDep, manager: ManagerDep, gateway: GatewayDep, request: Request
) -> AttemptOut | Response:
    """Cancel the open attempt (through any node: the node running it cancels it)."""
    if (carried := await forward.to_owner(request, gateway, account_id)) is not None:
        return carried
    return AttemptOut.of(await linking.cancel_link(manager, caller, account_id))


@router.get(
    "/{account_id}/qr",
    response_model=QrOut,
    responses={
        200: {
            "content": {
                "image/png": {},
                "image/svg+xml": {},
                "text/plain": {},
            },
            "description": "The current QR code as JSON, or rendered with ?format=",
        }
    },
)
async def current_qr(
    account_id: str,
    caller: CallerDep,
    session: SessionDep,
    manager: ManagerDep,
    fmt: Annotated[Literal["json", "png", "svg", "txt"], Query(alias="format")] = "json",
) -> QrOut | Response:
    """The QR code to show now; 404 when the account has none (not linking, or method code)."""
    await get_account(session, caller, account_id)
    live = await _live(session, manager, account_id)
    if live is None or live.qr is None:
        raise NotFound("no QR code to show for this account", account_id=account_id)
    shown = live.qr
    headers = {"Cache-Control": "no-store"}
    if fmt == "json":
        body = QrOut(
            attempt_id=live.attempt_id,
            code=shown.code,
            index=shown.index,
            expires_at=shown.expires_at,
        )
        return Response(body.model_dump_json(), media_type="application/json", headers=headers)
    return Response(qr.render(shown.code, fmt), media_type=qr.MEDIA_TYPES[fmt], headers=headers)


@router.get("/{account_id}/attempts", response_model=list[AttemptOut])
async def attempts(
    account_id: str, caller: CallerDep, session: SessionDep, manager: ManagerDep
) -> list[AttemptOut]:
    """Every link attempt of the account, newest first."""
    await get_account(session, caller, account_id)
    live = await _live(session, manager, account_id)
    return [AttemptOut.of(a, live) for a in await list_attempts(session, account_id)]


@router.post(
    "/{account_id}/logout",
    response_model=AccountOut,
    responses={409: {"model": ErrorBody, "description": "Nothing to log out"}},
)
async def logout(
    account_id: str,
    caller: CallerDep,
    manager: ManagerDep,
    session: SessionDep,
    gateway: GatewayDep,
    request: Request,
) -> AccountOut | Response:
    """Unlink: revoke the session with the server and delete its credentials. Through any
    node: the node serving the account closes its session at once."""
    if (carried := await forward.to_owner(request, gateway, account_id)) is not None:
        return carried
    [out] = await _out(session, [await commands.logout(manager, caller, account_id)])
    return out


@router.post(
    "/{account_id}/stop",
    response_model=AccountOut,
    responses={409: {"model": ErrorBody, "description": "Not running"}},
)
async def stop(
    account_id: str,
    caller: CallerDep,
    manager: ManagerDep,
    session: SessionDep,
    gateway: GatewayDep,
    request: Request,
) -> AccountOut | Response:
    """Park the session, keeping its credentials (idempotent). Through any node: the node
    serving the account closes its session at once."""
    if (carried := await forward.to_owner(request, gateway, account_id)) is not None:
        return carried
    [out] = await _out(session, [await commands.stop(manager, caller, account_id)])
    return out


@router.post(
    "/{account_id}/start",
    response_model=AccountOut,
    responses={409: {"model": ErrorBody, "description": "Not stopped"}},
)
async def start(
    account_id: str, caller: CallerDep, manager: ManagerDep, session: SessionDep
) -> AccountOut:
    """Resume a stopped session from its credentials (idempotent)."""
    [out] = await _out(session, [await commands.start(manager, caller, account_id)])
    return out


@router.delete("/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_account(
    account_id: str, caller: CallerDep, manager: ManagerDep, gateway: GatewayDep, request: Request
) -> Response:
    """Log out if linked, delete the credentials, remove the account."""
    if (carried := await forward.to_owner(request, gateway, account_id)) is not None:
        return carried
    manager.check_accepting()
    await commands.delete(manager, caller, account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
