"""Accounts: scoped lookups and the one function that changes an account's status."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.core.event_types import EventType
from wagate.core.states import AccountStatus, check_transition
from wagate.db import notes
from wagate.db.models import Account, utcnow
from wagate.db.outbox import record
from wagate.errors import NotFound
from wagate.services.workspaces import get_workspace


async def get_account(
    session: AsyncSession, caller: Caller, account_id: str, *, lock: bool = False
) -> Account:
    """The account, if the caller may see it; another workspace's account is simply not found."""
    query = select(Account).where(Account.id == account_id)
    if caller.workspace_id is not None:
        query = query.where(Account.workspace_id == caller.workspace_id)
    if lock:
        query = query.with_for_update()
    account = (await session.execute(query)).scalar_one_or_none()
    if account is None:
        raise NotFound("account not found", account_id=account_id)
    return account


async def create_account(
    session: AsyncSession, caller: Caller, workspace_id: str, label: str
) -> Account:
    """A new account of the workspace, status ``unlinked``."""
    workspace = await get_workspace(session, caller, workspace_id)
    account = Account(workspace_id=workspace.id, label=label)
    session.add(account)
    await session.flush()
    return account


async def account_ids(session: AsyncSession, workspace_id: str) -> set[str]:
    """The ids of a workspace's accounts."""
    query = select(Account.id).where(Account.workspace_id == workspace_id)
    return set((await session.execute(query)).scalars())


async def lock_account(session: AsyncSession, account_id: str) -> Account | None:
    """The account row locked for this transaction (internal use: no caller scope)."""
    query = select(Account).where(Account.id == account_id).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_accounts(
    session: AsyncSession, caller: Caller, status: AccountStatus | None = None
) -> list[Account]:
    query = select(Account).order_by(Account.created_at, Account.id)
    if caller.workspace_id is not None:
        query = query.where(Account.workspace_id == caller.workspace_id)
    if status is not None:
        query = query.where(Account.status == status.value)
    return list((await session.execute(query)).scalars())


def change_status(
    session: AsyncSession,
    account: Account,
    target: AccountStatus,
    reason: str | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Move ``account`` to ``target`` through the transition table and record the event."""
    current = AccountStatus(account.status)
    check_transition(current, target)
    now = now or utcnow()
    account.status = target.value
    account.status_reason = reason
    notes.of(session).statuses[account.id] = target.value
    account.version += 1
    account.updated_at = now
    record(
        session,
        account,
        EventType.ACCOUNT_STATUS,
        {"from": current.value, "status": target.value, "reason": reason},
        now=now,
    )
