"""Workspace API keys, managed with the admin key (DESIGN §6).

A key is shown once, when it is created; the database keeps only its SHA-256 hash and a short
prefix to recognise it by. A revoked key is refused from the next request on; a gateway process
that shares the database with the one that revoked it refuses it within 2 s (it keeps the keys
of recent requests that long, see ``wagate.services.keys.KeyCache``).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.api.deps import AdminDep, GatewayDep, SessionDep
from wagate.api.schemas import ErrorBody
from wagate.db.models import ApiKey
from wagate.services import keys
from wagate.services.keys import add_key
from wagate.services.workspaces import get_workspace

_EXAMPLE: dict[str, JsonValue] = {
    "id": "5b0e9c1d-2f3a-4b5c-8d6e-7f8091a2b3c4",
    "workspace_id": "9a7e4c2b-1d3f-4e5a-b6c7-d8e9f0a1b2c3",
    "prefix": "wg_Zk3qP9aB",
    "created_at": "2026-01-01T12:00:00Z",
    "revoked_at": None,
}


class KeyOut(BaseModel):
    """A key as listed: never the key itself, never its hash."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: str
    workspace_id: str
    prefix: str = Field(description="The first characters of the key, to recognise it by.")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        assert row.workspace_id is not None
        return cls(
            id=row.id,
            workspace_id=row.workspace_id,
            prefix=row.prefix,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class KeyCreated(KeyOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_EXAMPLE, "api_key": "wg_Zk3qP9aB..."}]}
    )

    api_key: str = Field(description="Shown once; store it now.")


router = APIRouter(
    prefix="/v1/workspaces/{workspace_id}/keys",
    tags=["keys"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        403: {"model": ErrorBody, "description": "Needs the admin key"},
        404: {"model": ErrorBody, "description": "No such workspace or key"},
        422: {"model": ErrorBody, "description": "Invalid input"},
    },
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
async def create_key(workspace_id: str, admin: AdminDep, gateway: GatewayDep) -> KeyCreated:
    """A new key for the workspace; the answer is the only place it is ever shown."""

    async def work(session: AsyncSession) -> tuple[ApiKey, str]:
        workspace = await get_workspace(session, admin, workspace_id)
        row, key = add_key(session, workspace.id)
        await session.flush()
        return row, key

    row, key = await gateway.db.run(work)
    return KeyCreated(**KeyOut.of(row).model_dump(), api_key=key)


@router.get("", response_model=list[KeyOut])
async def list_keys(workspace_id: str, admin: AdminDep, session: SessionDep) -> list[KeyOut]:
    """The workspace's keys, revoked ones included, oldest first."""
    await get_workspace(session, admin, workspace_id)
    return [KeyOut.of(row) for row in await keys.list_keys(session, workspace_id)]


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(
    workspace_id: str, key_id: str, admin: AdminDep, gateway: GatewayDep
) -> KeyOut:
    """Revoke a key: it is refused (401) from the next request on (by another gateway process
    sharing the database, within 2 s). Revoking twice keeps the first revocation time."""

    async def work(session: AsyncSession) -> ApiKey:
        await get_workspace(session, admin, workspace_id)
        return await keys.revoke_key(session, workspace_id, key_id)

    revoked = await gateway.db.run(work)
    gateway.keys.forget(revoked.id)
    return KeyOut.of(revoked)
