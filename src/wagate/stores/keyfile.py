"""The key that encrypts credentials and webhook secrets: configured, or a file in DATA_DIR."""

from __future__ import annotations

import base64
import logging
import os
import secrets
from pathlib import Path

from wagate.core.crypto import parse_key

log = logging.getLogger("wagate.crypto")

KEY_FILE = "secret.key"


def load_or_create_key(data_dir: Path, configured: str | None) -> bytes:
    """The configured key, else the key file in ``data_dir`` (created with mode 0600)."""
    if configured:
        return parse_key(configured)
    path = data_dir / KEY_FILE
    if path.exists():
        return parse_key(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.urlsafe_b64encode(key).decode() + "\n")
    log.info("created a new secret key file", extra={"path": str(path)})
    return key
