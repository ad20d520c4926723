"""Workspaces (tenants): created with their first key and webhook secret, read, changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.core.crypto import Cipher
from wagate.db.models import Workspace
from wagate.errors import NotFound
from wagate.services.keys import add_key


async def get_workspace(session: AsyncSession, caller: Caller, workspace_id: str) -> Workspace:
    """The workspace, if the caller may see it; another tenant's is simply not found."""
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None or not caller.sees(workspace.id):
        raise NotFound("workspace not found", workspace_id=workspace_id)
    return workspace


async def create_workspace(
    session: AsyncSession,
    cipher: Cipher,
    name: str,
    webhook_url: str | None,
    webhook_secret: str,
) -> tuple[Workspace, str]:
    """A new workspace with ``webhook_secret`` stored encrypted, and its first API key (returned
    once, never stored)."""
    workspace = Workspace(name=name, webhook_url=webhook_url, webhook_secret="")
    session.add(workspace)
    await session.flush()
    # The workspace's id is part of the encryption context: known only after the flush.
    workspace.webhook_secret = cipher.encrypt_text(
        webhook_secret, context=f"webhook:{workspace.id}"
    )
    _, key = add_key(session, workspace.id)
    await session.flush()
    return workspace, key


async def update_workspace(
    session: AsyncSession, caller: Caller, workspace_id: str, changes: dict[str, Any]
) -> Workspace:
    """Apply ``changes`` (webhook_url, webhook_format, link_policy) to a workspace."""
    workspace = await get_workspace(session, caller, workspace_id)
    for name, value in changes.items():
        setattr(workspace, name, value)
    await session.flush()
    return workspace
