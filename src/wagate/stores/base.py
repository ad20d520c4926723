"""The AuthStore protocol every credential store implements."""

from __future__ import annotations

from typing import Protocol


class AuthStore(Protocol):
    """Encrypted, checksummed engine credentials, one opaque blob per account.

    Implementations encrypt with ``wagate.core.crypto.Cipher`` bound to the account id, so a blob
    copied onto another account fails to open. ``load`` raises ``CredentialsCorrupt`` for a blob
    that fails its checksum or decryption; it never returns damaged bytes.
    """

    name: str

    async def save(self, account_id: str, blob: bytes) -> None:
        """Store (or replace) the account's credentials atomically."""

    async def load(self, account_id: str) -> bytes | None:
        """The account's credentials, or None when there are none."""

    async def delete(self, account_id: str) -> None:
        """Remove the account's credentials; no error when there are none."""

    async def close(self) -> None:
        """Release connections; idempotent."""
