"""What a handler or command works with: the locked account, its open attempt, the clock, and
the runtime it may reach once the transaction commits (the engine, the credential store, the codes
on show).

Handlers and commands take one ``Ctx`` and nothing else, so nothing here or below it needs the
``SessionManager``: the manager builds a ``Ctx`` for each transaction and runs what the handler
queued in ``ctx.after`` once the transaction has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.cluster import DEFAULT_TERMS, LeaseTerms
from wagate.core.states import AccountStatus
from wagate.db import notes
from wagate.db.database import db_clock
from wagate.db.models import Account, LinkAttempt
from wagate.engines.base import Engine, PairCode, QrCode
from wagate.errors import EngineTimeout
from wagate.services import cluster
from wagate.stores.base import AuthStore

T = TypeVar("T")
# Work that runs after the commit: an engine call, showing a code, deleting credentials.
Effect = Callable[[], Awaitable[None]]


@dataclass
class Live:
    """What only the running process knows about an account's open attempt: the current code."""

    attempt_id: str
    qr: QrCode | None = None
    pair_code: PairCode | None = None


class Runtime:
    """The session layer's reach outside the database: the engine, under wagate's own timeout,
    the credential store, and the codes each open attempt is showing."""

    def __init__(
        self,
        engine: Engine,
        auth: AuthStore | None,
        call_timeout: float,
        *,
        node: str = "local",
        terms: LeaseTerms = DEFAULT_TERMS,
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.call_timeout = call_timeout
        self.live_codes: dict[str, Live] = {}
        # This node's name, and the leases it holds: account id → the epoch it took.
        self.node = node
        self.terms = terms
        self.held: dict[str, int] = {}

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """An engine call under wagate's own timeout."""
        try:
            return await asyncio.wait_for(coro, self.call_timeout)
        except TimeoutError as exc:
            raise EngineTimeout("the engine did not answer in time") from exc

    def engine_effect(self, coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> Effect:
        """An engine call to make once the transaction has committed."""

        async def effect() -> None:
            await self.call(coro_factory())

        return effect

    def forget_codes(self, account_id: str) -> Effect:
        async def forget() -> None:
            self.live_codes.pop(account_id, None)

        return forget

    def delete_credentials(self, account_id: str) -> Effect:
        async def delete() -> None:
            if self.auth is not None:
                await self.auth.delete(account_id)

        return delete


async def claim_lease(session: AsyncSession, account_id: str, runtime: Runtime) -> int | None:
    """Take (or renew) the account's lease for this node in the transaction, noted for the
    manager to hold once it commits; its epoch, or None when another node holds it."""
    now = await db_clock(session)
    epoch = await cluster.take(session, account_id, runtime.node, now, runtime.terms)
    if epoch is not None:
        notes.of(session).leases[account_id] = epoch
    return epoch


@dataclass
class Ctx:
    """One transaction on one account: the locked account, its open attempt, the clock, and
    what to do after the commit."""

    session: AsyncSession
    account: Account
    attempt: LinkAttempt | None
    now: datetime
    runtime: Runtime
    after: list[Effect] = field(default_factory=list)
    # wa_ids of the account's stored incoming messages, when a batch looked them up at once.
    incoming: set[str] | None = None

    @property
    def status(self) -> AccountStatus:
        return AccountStatus(self.account.status)

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    async def claim(self) -> bool:
        """Take (or renew) this account's lease for this node, in this transaction; False when
        another node holds it."""
        return await claim_lease(self.session, self.account.id, self.runtime) is not None

    def then_engine(self, coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Call the engine once the transaction has committed."""
        self.after.append(self.runtime.engine_effect(coro_factory))

    def then_forget_codes(self, account_id: str) -> None:
        self.after.append(self.runtime.forget_codes(account_id))

    def then_delete_credentials(self, account_id: str) -> None:
        self.after.append(self.runtime.delete_credentials(account_id))
