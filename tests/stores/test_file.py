"""The file store: private files, atomic replacement, no path tricks, a readable failure."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.stores.support import BLOB, KEY, SECRET_PART
from wagate.core.crypto import Cipher, checksum
from wagate.errors import CredentialsCorrupt, InvalidInput, StoreUnavailable
from wagate.stores.file import FileAuthStore


async def test_files_are_private_and_no_temp_files_remain(tmp_path: Path) -> None:
    directory = tmp_path / "auth"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    store = FileAuthStore(directory, Cipher(KEY))
    account = str(uuid.uuid4())
    for _ in range(3):
        await store.save(account, BLOB)
    assert [p.name for p in directory.iterdir()] == [f"{account}.cred"]
    assert store.path(account).stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700


async def test_file_holds_a_checksum_header_then_ciphertext(tmp_path: Path) -> None:
    store, account = FileAuthStore(tmp_path, Cipher(KEY)), str(uuid.uuid4())
    await store.save(account, BLOB)
    raw = store.path(account).read_bytes()
    header, _, ciphertext = raw.partition(b"\n")
    assert json.loads(header)["checksum"] == checksum(ciphertext)
    assert SECRET_PART.encode() not in raw


@pytest.mark.parametrize(
    "account_id", ["../../etc/passwd", "/etc/passwd", "", "a/b", f"{uuid.uuid4()}/../x"]
)
async def test_account_id_never_becomes_a_path(tmp_path: Path, account_id: str) -> None:
    store = FileAuthStore(tmp_path / "auth", Cipher(KEY))
    with pytest.raises(InvalidInput):
        await store.save(account_id, BLOB)
    with pytest.raises(InvalidInput):
        await store.load(account_id)
    with pytest.raises(InvalidInput):
        await store.delete(account_id)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["auth"]


@pytest.mark.parametrize(
    "content",
    [b"", b"not json\n", b'{"v": 1}\n', '{"checksum": "\u00e9"}\n'.encode(), b'{"checksum": '],
)
async def test_unreadable_header_is_corrupt(tmp_path: Path, content: bytes) -> None:
    store, account = FileAuthStore(tmp_path, Cipher(KEY)), str(uuid.uuid4())
    await store.save(account, BLOB)
    store.path(account).write_bytes(content)
    with pytest.raises(CredentialsCorrupt):
        await store.load(account)


async def test_failed_write_keeps_old_credentials_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, account = FileAuthStore(tmp_path, Cipher(KEY)), str(uuid.uuid4())
    await store.save(account, BLOB)

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StoreUnavailable):
        await store.save(account, b"newer")
    monkeypatch.undo()
    assert await store.load(account) == BLOB
    assert [p.name for p in tmp_path.iterdir()] == [f"{account}.cred"]


async def test_vanished_directory_is_unavailable_not_empty(tmp_path: Path) -> None:
    directory = tmp_path / "auth"
    store, account = FileAuthStore(directory, Cipher(KEY)), str(uuid.uuid4())
    await store.save(account, BLOB)
    store.path(account).unlink()
    directory.rmdir()
    # "No credentials" would log every account out; a missing mount must not look like that.
    with pytest.raises(StoreUnavailable):
        await store.load(account)
    with pytest.raises(StoreUnavailable):
        await store.save(account, BLOB)


def test_directory_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "auth").write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        FileAuthStore(tmp_path / "auth", Cipher(KEY))
