"""Credentials as one file per account in a directory: written to a temp file, fsynced, renamed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from wagate.core.crypto import Cipher
from wagate.errors import CredentialsCorrupt, InvalidInput, StoreUnavailable
from wagate.stores.sealed import Sealed, seal, unseal

_SUFFIX = ".cred"
_TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def _usable(what: str) -> Iterator[None]:
    # A full disk or a vanished mount is the store's failure, not "no credentials": callers
    # must be able to tell the two apart (restoration logs out accounts without credentials).
    try:
        yield
    except OSError as exc:
        raise StoreUnavailable(f"the credentials directory could not be {what}") from exc


class FileAuthStore:
    """``<directory>/<account id>.cred``: a JSON header line with the checksum, then ciphertext.

    A save writes a temp file in the same directory, fsyncs it, renames it over the old file and
    fsyncs the directory, so a crash leaves either the old credentials or the new ones.
    """

    name = "file"

    def __init__(self, directory: Path, cipher: Cipher) -> None:
        self.directory = directory
        self.cipher = cipher
        with _usable("created"):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is masked by umask and skipped if it exists

    def path(self, account_id: str) -> Path:
        try:
            canonical = str(uuid.UUID(account_id))
        except ValueError as exc:  # an id never becomes a path of its own choosing
            raise InvalidInput("account ids are UUIDs") from exc
        return self.directory / f"{canonical}{_SUFFIX}"

    async def save(self, account_id: str, blob: bytes) -> None:
        target = self.path(account_id)
        sealed = seal(self.cipher, account_id, blob)
        with _usable("written"):
            await asyncio.to_thread(self._write, target, sealed)

    def _write(self, target: Path, sealed: Sealed) -> None:
        header = json.dumps({"v": 1, "checksum": sealed.checksum}).encode() + b"\n"
        # mkstemp creates the file with mode 0600, so the credentials are never readable by others.
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=_TEMP_PREFIX, suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(header + sealed.ciphertext)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        # The rename itself lives in the directory: without this it may not survive a power cut.
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    async def load(self, account_id: str) -> bytes | None:
        path = self.path(account_id)
        with _usable("read"):
            raw = await asyncio.to_thread(self._read, path)
        if raw is None:
            return None
        header, _, ciphertext = raw.partition(b"\n")
        try:
            checksum = str(json.loads(header)["checksum"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CredentialsCorrupt("credentials file has no readable header") from exc
        return unseal(self.cipher, account_id, Sealed(ciphertext, checksum))

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if not self.directory.is_dir():
                raise  # the whole directory is gone: that is not "this account has none"
            return None

    async def delete(self, account_id: str) -> None:
        path = self.path(account_id)
        with _usable("changed"):
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def close(self) -> None:
        """Files need no closing."""
