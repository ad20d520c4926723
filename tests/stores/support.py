"""What the store tests share: a key, a plaintext that must never leak, an account row."""

from __future__ import annotations

import os

from sqlalchemy.ext.asyncio import AsyncSession

from wagate.db.database import Database
from wagate.db.models import Account, Workspace

KEY = os.urandom(32)
# Distinctive enough that finding any of it in a log line or a file means a leak.
SECRET_PART = "noise-key-material-7f3a9c"
BLOB = ('{"phone": "5511999990000", "secret": "' + SECRET_PART + '"}').encode()


async def make_account(db: Database) -> str:
    """A workspace and an account in it: auth_states rows need an account to belong to."""

    async def work(session: AsyncSession) -> str:
        workspace = Workspace(name="w", webhook_secret="x")
        session.add(workspace)
        await session.flush()
        account = Account(workspace_id=workspace.id, label="a")
        session.add(account)
        await session.flush()
        return account.id

    return await db.run(work)
