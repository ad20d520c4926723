"""Credentials in the ``auth_states`` table (the default store)."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.crypto import Cipher
from wagate.db.database import Database
from wagate.db.models import Account, AuthState, utcnow
from wagate.errors import NotFound
from wagate.stores.sealed import Sealed, seal, unseal


class DbAuthStore:
    """One row per account, written in its own short transaction; ``version`` counts saves."""

    name = "db"

    def __init__(self, db: Database, cipher: Cipher) -> None:
        self.db = db
        self.cipher = cipher

    async def save(self, account_id: str, blob: bytes) -> None:
        sealed = seal(self.cipher, account_id, blob)

        async def work(session: AsyncSession) -> None:
            # Lock the account first: saves for one account never race each other's insert, and
            # a deletion waits for this save (its cascade then removes the row with the account).
            if await session.get(Account, account_id, with_for_update=True) is None:
                # Said plainly rather than left to the foreign key's IntegrityError; a caller
                # must not believe credentials were kept for an account that is gone.
                raise NotFound("no such account to keep credentials for", account_id=account_id)
            row = await session.get(AuthState, account_id)
            if row is None:
                session.add(
                    AuthState(
                        account_id=account_id,
                        ciphertext=sealed.ciphertext,
                        checksum=sealed.checksum,
                        version=1,
                        updated_at=utcnow(),
                    )
                )
            else:
                row.ciphertext, row.checksum = sealed.ciphertext, sealed.checksum
                row.version += 1
                row.updated_at = utcnow()

        await self.db.run(work, retry_integrity=True)

    async def load(self, account_id: str) -> bytes | None:
        async with self.db.read_sessions() as session:
            row = await session.get(AuthState, account_id)
            if row is None:
                return None
            sealed = Sealed(row.ciphertext, row.checksum)
        return unseal(self.cipher, account_id, sealed)

    async def delete(self, account_id: str) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(delete(AuthState).where(AuthState.account_id == account_id))

        await self.db.run(work)

    async def close(self) -> None:
        """The database belongs to the gateway; nothing of the store's own to release."""
