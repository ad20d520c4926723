"""``wagate doctor``: read a WhatsApp service's logs and dependency files, say what went wrong.

- ``wagate.doctor.logs`` reconstructs link attempts from wagate's JSON logs and from winston logs
  of whatsapp-web.js services; the messages wagate logs for that are
  ``wagate.doctor.logs.WagateMessage``.
- ``wagate.doctor.deps`` reports engine versions and matches them against ``known_issues.json``.
- ``wagate.doctor.cli`` is the ``doctor`` command group.
"""

from __future__ import annotations

from wagate.errors import WagateError


class DoctorError(WagateError):
    """Input the doctor cannot read: a missing file, binary data, malformed JSON or TOML."""

    code = "doctor_input"
