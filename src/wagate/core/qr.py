"""QR rendering (segno): PNG, SVG and terminal text for a QR payload."""

from __future__ import annotations

import base64
import io
from typing import Literal

import segno

QrFormat = Literal["png", "svg", "txt"]
MEDIA_TYPES: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "txt": "text/plain; charset=utf-8",
}


def render(code: str, fmt: QrFormat, *, scale: int = 6) -> bytes:
    """The QR of ``code`` as PNG, SVG or Unicode half-block text for a terminal."""
    qr = segno.make_qr(code, error="L")
    if fmt == "txt":
        text = io.StringIO()
        qr.terminal(out=text, compact=True, border=2)
        return text.getvalue().encode()
    buffer = io.BytesIO()
    qr.save(buffer, kind=fmt, scale=scale, border=4)
    return buffer.getvalue()


def png_data_url(code: str) -> str:
    return "data:image/png;base64," + base64.b64encode(render(code, "png")).decode()
