"""Encryption at rest: AES-GCM for credentials and webhook secrets, with a checksum."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wagate.errors import CredentialsCorrupt

log = logging.getLogger("wagate.crypto")

KEY_FILE = "secret.key"
_FORMAT = b"\x01"
_NONCE = 12


def checksum(data: bytes) -> str:
    """Hex SHA-256, stored beside each sealed blob to tell corruption from a wrong key."""
    return hashlib.sha256(data).hexdigest()


class Cipher:
    """AES-256-GCM; the ``context`` (an account id, a table name) is bound to each blob."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret key must be 32 bytes")
        self._aead = AESGCM(key)
        # Names the key without revealing it: nodes of one cluster compare theirs (a node with
        # another key would find every credential "corrupt" and log its account out).
        self.fingerprint = hashlib.sha256(b"wagate key fingerprint\x00" + key).hexdigest()[:16]

    def encrypt(self, plaintext: bytes, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return _FORMAT + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def decrypt(self, blob: bytes, *, context: str) -> bytes:
        """Plaintext, or ``CredentialsCorrupt`` when the blob was altered, cut or mis-keyed."""
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _FORMAT:
            raise CredentialsCorrupt("sealed blob is truncated or of an unknown format")
        nonce, body = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, context.encode())
        except InvalidTag as exc:
            raise CredentialsCorrupt("sealed blob failed authentication") from exc

    def encrypt_text(self, text: str, *, context: str) -> str:
        return base64.b64encode(self.encrypt(text.encode(), context=context)).decode()

    def decrypt_text(self, token: str, *, context: str) -> str:
        try:
            blob = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CredentialsCorrupt("sealed text is not base64") from exc
        return self.decrypt(blob, context=context).decode()


def parse_key(value: str) -> bytes:
    """A 32-byte key from base64 (urlsafe or standard); any other text is hashed to 32 bytes."""
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            raw = decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    return hashlib.sha256(value.encode()).digest()
