"""Who is asking: the identity every scoped lookup and command is checked against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a workspace key, or the admin key (``workspace_id`` None)."""

    key_id: str | None
    workspace_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.workspace_id is None

    def sees(self, workspace_id: str) -> bool:
        return self.is_admin or self.workspace_id == workspace_id
