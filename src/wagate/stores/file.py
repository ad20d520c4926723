"""Credentials as one file per account in a directory: written to a temp file, fsynced, renamed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from pathlib import Path

from wagate.crypto import Cipher
from wagate.errors import CredentialsCorrupt, InvalidInput
from wagate.stores.sealed import Sealed, seal, unseal

_SUFFIX = ".cred"


class FileAuthStore:
    """``<directory>/<account id>.cred``: a JSON header line with the checksum, then ciphertext."""

    name = "file"

    def __init__(self, directory: Path, cipher: Cipher) -> None:
        self.directory = directory
        self.cipher = cipher
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)

    def path(self, account_id: str) -> Path:
        try:
            canonical = str(uuid.UUID(account_id))
        except ValueError as exc:  # an id never becomes a path of its own choosing
            raise InvalidInput("account ids are UUIDs") from exc
        return self.directory / f"{canonical}{_SUFFIX}"

    async def save(self, account_id: str, blob: bytes) -> None:
        sealed = seal(self.cipher, account_id, blob)
        await asyncio.to_thread(self._write, self.path(account_id), sealed)

    def _write(self, target: Path, sealed: Sealed) -> None:
        header = json.dumps({"v": 1, "checksum": sealed.checksum}).encode() + b"\n"
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(header + sealed.ciphertext)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    async def load(self, account_id: str) -> bytes | None:
        path = self.path(account_id)
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        header, _, ciphertext = raw.partition(b"\n")
        try:
            checksum = str(json.loads(header)["checksum"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CredentialsCorrupt("credentials file has no readable header") from exc
        return unseal(self.cipher, account_id, Sealed(ciphertext, checksum))

    async def delete(self, account_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path(account_id).unlink)

    async def close(self) -> None:
        """Files need no closing."""
