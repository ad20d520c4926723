"""``wagate doctor schema --lint``: uniqueness keys that contain a status column, on any database.

A key such as ``UNIQUE(phone_number, workspace_id, status)`` reads like "one active row per
phone", but it only forbids two rows in the *same* status: the old row of a failed or abandoned
link still sits in ``qr_scanning`` or ``disconnected``, so the retry or re-link that moves a new
row into that status fails with "Duplicate entry" (the replaced service's QR regeneration bug,
DESIGN §12). The fix is DESIGN §2 invariant 3: a derived column that is NULL unless the row is
active, with the unique key over it, since NULLs never collide.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Enum, Inspector

from wagate.doctor.schema import Finding

KIND = "status_in_unique_key"

# ``status``, ``state``, ``account_status``, ``session_state``, ``accountStatus``.
_STATUS_NAME = re.compile(r"(?:^|_)(?:status|state)$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_status_name(name: str) -> bool:
    """Whether a column is named like a status: ``status``, ``state``, ``session_state``, ..."""
    return _STATUS_NAME.search(_CAMEL.sub("_", name).lower()) is not None


def _status_columns(columns: tuple[str | None, ...], types: dict[str, Any]) -> list[str]:
    return [
        c
        for c in columns
        if c is not None and (is_status_name(c) or isinstance(types.get(c), Enum))
    ]


def _unique_keys(inspector: Inspector, table: str) -> Iterator[tuple[str, tuple[str | None, ...]]]:
    """Every uniqueness key of ``table`` once: MySQL reports a constraint as an index too."""
    seen: set[str] = set()
    pk = inspector.get_pk_constraint(table)
    if pk["constrained_columns"]:
        seen.add("PRIMARY KEY")
        yield pk["name"] or "PRIMARY KEY", tuple(pk["constrained_columns"])
    for unique in inspector.get_unique_constraints(table):
        name = unique["name"] or f"UNIQUE({', '.join(unique['column_names'])})"
        seen.add(name)
        yield name, tuple(unique["column_names"])
    for index in inspector.get_indexes(table):
        cols = tuple(index["column_names"])
        name = index["name"] or f"UNIQUE({', '.join(c or '<expression>' for c in cols)})"
        if index["unique"] and name not in seen:
            seen.add(name)
            yield name, cols


def why(cols: tuple[str | None, ...], status: list[str]) -> str:
    """The failure such a key causes, in the key's own words."""
    others = [c for c in cols if c is not None and c not in status]
    named = " and ".join([", ".join(others[:-1]), others[-1]] if len(others) > 1 else others)
    same = f"the same {named}" if others else "the same values"
    return (
        f"a retry or re-link collides with an older row of {same} left in the same "
        f'{status[0]} (the "Duplicate entry" failure)'
    )


def fix(cols: tuple[str | None, ...], status: list[str]) -> str:
    """The invariant-3 rewrite of one key, spelled with its own columns."""
    others = [c for c in cols if c is not None and c not in status]
    if not others:
        return (
            "drop the key, or key a derived column that is NULL unless the row is active; "
            "NULLs never collide (DESIGN §2 invariant 3)"
        )
    derived = f"active_{others[0]}"
    return (
        f"a derived column {derived} = CASE WHEN {status[0]} IN (<active statuses>) "
        f"THEN {others[0]} END, NULL unless the row is active, and "
        f"UNIQUE({', '.join([derived, *others[1:]])}) instead; NULLs never collide "
        "(DESIGN §2 invariant 3)"
    )


def lint_table(inspector: Inspector, table: str) -> list[Finding]:
    types = {c["name"]: c["type"] for c in inspector.get_columns(table)}
    found: list[Finding] = []
    for name, cols in _unique_keys(inspector, table):
        status = _status_columns(cols, types)
        if not status:
            continue
        col = status[0]
        shown = f"UNIQUE({', '.join(c or '<expression>' for c in cols)})"
        what = "an ENUM" if isinstance(types.get(col), Enum) else "a status-like"
        found.append(
            Finding(
                KIND,
                table,
                name,
                f"{shown} contains {what} column `{col}`: {why(cols, status)}. "
                f"Fix: {fix(cols, status)}",
            )
        )
    return found


def lint_schema(inspector: Inspector) -> list[Finding]:
    """Status-like columns in the uniqueness keys of every table of the database."""
    found: list[Finding] = []
    for table in sorted(inspector.get_table_names()):
        found += lint_table(inspector, table)
    return found
