"""Workspaces: the tenants (DESIGN §6)."""

from __future__ import annotations

from fastapi import APIRouter, status

from wagate.api.deps import AdminDep, CallerDep, GatewayDep, SessionDep
from wagate.api.schemas import (
    ErrorBody,
    WorkspaceCreate,
    WorkspaceCreated,
    WorkspaceOut,
    WorkspaceUpdate,
)
from wagate.services import workspaces
from wagate.services.workspaces import get_workspace

router = APIRouter(
    prefix="/v1/workspaces",
    tags=["workspaces"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        422: {"model": ErrorBody, "description": "Invalid input"},
    },
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkspaceCreated,
    responses={403: {"model": ErrorBody, "description": "Needs the admin key"}},
)
async def create_workspace(
    body: WorkspaceCreate, admin: AdminDep, gateway: GatewayDep
) -> WorkspaceCreated:
    """Create a tenant with its first API key and webhook secret, both shown only here."""
    secret = gateway.new_webhook_secret()
    cipher = gateway.cipher
    assert cipher is not None

    url = str(body.webhook_url) if body.webhook_url else None
    if url is not None:
        await gateway.guard.check(url)
    workspace, key = await gateway.db.run(
        lambda session: workspaces.create_workspace(session, cipher, body.name, url, secret)
    )
    out = WorkspaceOut.of(workspace)
    return WorkspaceCreated(**out.model_dump(), api_key=key, webhook_secret=secret)


@router.get(
    "/{workspace_id}",
    response_model=WorkspaceOut,
    responses={404: {"model": ErrorBody, "description": "No such workspace for this key"}},
)
async def read_workspace(workspace_id: str, caller: CallerDep, session: SessionDep) -> WorkspaceOut:
    return WorkspaceOut.of(await get_workspace(session, caller, workspace_id))


@router.patch(
    "/{workspace_id}",
    response_model=WorkspaceOut,
    responses={404: {"model": ErrorBody, "description": "No such workspace for this key"}},
)
async def update_workspace(
    workspace_id: str, body: WorkspaceUpdate, caller: CallerDep, gateway: GatewayDep
) -> WorkspaceOut:
    """Change the webhook URL (null turns webhooks off), the webhook format or the link policy."""
    changes = body.model_dump(include=body.model_fields_set)
    if "webhook_url" in changes and body.webhook_url is not None:
        changes["webhook_url"] = str(body.webhook_url)
        await gateway.guard.check(changes["webhook_url"])

    workspace = await gateway.db.run(
        lambda session: workspaces.update_workspace(session, caller, workspace_id, changes)
    )
    return WorkspaceOut.of(workspace)
