"""wagate: a multi-tenant gateway for WhatsApp linked-device sessions."""

from __future__ import annotations

__version__ = "0.1.0"
