"""The tables in code and in the migrations agree on every CHECK constraint, and each constraint
on a status or choice admits exactly its enum's values."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from sqlalchemy import CheckConstraint

from wagate.core.states import AccountStatus, AttemptOutcome, LinkMethod
from wagate.core.statuses import (
    DeliveryStatus,
    LinkPolicy,
    MessageDirection,
    MessageStatus,
    NodeState,
    WebhookFormat,
)
from wagate.db.database import Database
from wagate.db.models import Base

ENUM_CHECKS: dict[str, type[StrEnum]] = {
    "ck_accounts_status": AccountStatus,
    "ck_link_attempts_method": LinkMethod,
    "ck_link_attempts_outcome": AttemptOutcome,
    "ck_workspaces_webhook_format": WebhookFormat,
    "ck_workspaces_link_policy": LinkPolicy,
    "ck_webhook_deliveries_status": DeliveryStatus,
    "ck_messages_direction": MessageDirection,
    "ck_messages_status": MessageStatus,
    "ck_nodes_state": NodeState,
}


def checks() -> dict[str, tuple[str, str]]:
    """Each model CHECK constraint: name → (table, SQL text)."""
    return {
        str(c.name): (table.name, str(c.sqltext))
        for table in Base.metadata.sorted_tables
        for c in table.constraints
        if isinstance(c, CheckConstraint)
    }


def test_each_enum_check_admits_exactly_the_enum() -> None:
    found = checks()
    assert set(ENUM_CHECKS) <= set(found)
    for name, enum in ENUM_CHECKS.items():
        text = found[name][1]
        quoted = {part.strip().strip("'") for part in text.split("IN (")[1].rstrip(")").split(",")}
        assert quoted == {member.value for member in enum}, name


async def test_the_migrations_create_the_same_checks(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/checks.db")
    try:
        await db.upgrade()
        async with db.reader.connect() as conn:
            rows = await conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type='table'"
            )
            created = {name: sql for name, sql in rows}
    finally:
        await db.close()
    for name, (table, text) in checks().items():
        assert f"CONSTRAINT {name} CHECK ({text})" in created[table], name
