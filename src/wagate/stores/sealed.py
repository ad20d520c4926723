"""The at-rest form shared by every store: AES-GCM ciphertext plus its checksum."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from wagate.core.crypto import Cipher, checksum
from wagate.errors import CredentialsCorrupt


@dataclass(frozen=True, slots=True)
class Sealed:
    ciphertext: bytes
    checksum: str

    def __repr__(self) -> str:  # neither half belongs in a log line
        return f"Sealed(<{len(self.ciphertext)} bytes>)"


def seal(cipher: Cipher, account_id: str, blob: bytes) -> Sealed:
    ciphertext = cipher.encrypt(blob, context=account_id)
    return Sealed(ciphertext, checksum(ciphertext))


def unseal(cipher: Cipher, account_id: str, sealed: Sealed) -> bytes:
    """The credentials, or ``CredentialsCorrupt`` if the checksum or decryption fails."""
    # Compared as bytes: a damaged header may hold any text, and compare_digest refuses
    # non-ASCII strings with a TypeError instead of answering "different".
    stored = sealed.checksum.encode("utf-8", "replace")
    if not hmac.compare_digest(checksum(sealed.ciphertext).encode(), stored):
        raise CredentialsCorrupt("stored credentials fail their checksum")
    return cipher.decrypt(sealed.ciphertext, context=account_id)
