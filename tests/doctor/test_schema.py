"""``wagate doctor schema``: drift from the migrations' head, status columns in unique keys, and
databases it cannot read, on every backend, through the command line."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from tests.conftest import service_url
from wagate.cli.main import app
from wagate.db.database import Database, alembic_config, async_url, head_revision
from wagate.doctor.lint import is_status_name

LARAVEL_STATUSES = "'qr_scanning', 'authenticated', 'connected', 'disconnected', 'failed'"


async def doctor(*args: str) -> tuple[int, str, str]:
    # The command runs its own event loop; give it a thread of its own.
    result = await asyncio.to_thread(CliRunner().invoke, app, ["doctor", "schema", *args])
    return result.exit_code, result.stdout, result.stderr


async def report(url: str, *args: str, expect: int) -> dict[str, Any]:
    code, out, err = await doctor("--json", "--db", url, *args)
    assert code == expect, (code, out, err)
    data: dict[str, Any] = json.loads(out)
    assert data["ok"] is (expect == 0)
    for finding in data["findings"]:
        assert set(finding) == {"kind", "table", "name", "detail"}
    return data


def plain(url: str) -> str:
    """The URL without an async driver, as a user would type it: ``sqlite:///…``, ``mysql://…``."""
    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=False)


def backend(url: str) -> str:
    return make_url(url).get_backend_name()


async def execute(url: str, *statements: str) -> None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def migrated(url: str) -> str:
    db = Database(url)
    try:
        await db.upgrade()
    finally:
        await db.close()
    return url


def kinds(data: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f["kind"], f["table"], f["name"]) for f in data["findings"]}


async def test_migrated_database_matches_models_and_has_no_status_key(database_url: str) -> None:
    url = plain(await migrated(database_url))
    data = await report(url, expect=0)
    assert data["findings"] == []
    assert data["revision"] == data["head"] == head_revision()
    # wagate's own unique keys are over derived columns (linked_phone), never over a status.
    assert (await report(url, "--lint", expect=0))["findings"] == []
    code, out, _ = await doctor("--db", url)
    assert code == 0
    assert "matches wagate's migrations" in out


async def test_status_unique_key_on_accounts_is_drift_and_linted(database_url: str) -> None:
    url = await migrated(database_url)
    key = "uq_accounts_phone_workspace_id_status"
    # How such a key usually arrives: by hand, beside the migrations.
    if backend(url) == "sqlite":
        await execute(url, f"CREATE UNIQUE INDEX {key} ON accounts (phone, workspace_id, status)")
    else:
        await execute(
            url, f"ALTER TABLE accounts ADD CONSTRAINT {key} UNIQUE (phone, workspace_id, status)"
        )
    diff = await report(url, expect=1)
    assert kinds(diff) == {("extra_unique_key", "accounts", key)}
    assert "(phone, workspace_id, status)" in diff["findings"][0]["detail"]

    lint = await report(url, "--lint", expect=1)
    assert kinds(lint) == {("status_in_unique_key", "accounts", key)}
    detail = lint["findings"][0]["detail"]
    assert "`status`" in detail
    assert "Duplicate entry" in detail
    assert "NULL unless the row is active" in detail

    code, out, _ = await doctor("--lint", "--db", plain(url))
    assert code == 1
    assert key in out


def laravel_tables(kind: str) -> tuple[str, ...]:
    """The replaced service's ``whatsapp_accounts`` as Laravel creates it on each backend: an
    ENUM on MySQL, a string with a CHECK elsewhere."""
    mysql = kind == "mysql"
    ident = {
        "mysql": "BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "postgresql": "BIGSERIAL PRIMARY KEY",
        "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    }[kind]
    ref = "BIGINT UNSIGNED" if mysql else "BIGINT"
    status = (
        f"ENUM({LARAVEL_STATUSES})"
        if mysql
        else f"VARCHAR(255) CHECK (status IN ({LARAVEL_STATUSES}))"
    )
    flag = "TINYINT(1)" if mysql else "BOOLEAN"
    return (
        f"CREATE TABLE workspaces (id {ident}, name VARCHAR(255) NOT NULL)",
        f"""CREATE TABLE whatsapp_accounts (
            id {ident},
            workspace_id {ref} NOT NULL,
            session_id VARCHAR(255) NOT NULL,
            phone_number VARCHAR(50) NULL,
            status {status} NOT NULL DEFAULT 'qr_scanning',
            is_primary {flag} NOT NULL DEFAULT '0',
            is_active {flag} NOT NULL DEFAULT '1',
            qr_code TEXT NULL,
            last_connected_at TIMESTAMP NULL,
            last_activity_at TIMESTAMP NULL,
            metadata JSON NULL,
            created_at TIMESTAMP NULL,
            updated_at TIMESTAMP NULL,
            deleted_at TIMESTAMP NULL,
            CONSTRAINT whatsapp_accounts_session_id_unique UNIQUE (session_id),
            CONSTRAINT unique_active_phone_workspace UNIQUE (phone_number, workspace_id, status),
            CONSTRAINT whatsapp_accounts_workspace_id_foreign FOREIGN KEY (workspace_id)
                REFERENCES workspaces (id) ON DELETE CASCADE
        )""",
        "CREATE INDEX whatsapp_accounts_workspace_id_status_index"
        " ON whatsapp_accounts (workspace_id, status)",
        "CREATE INDEX whatsapp_accounts_status_index ON whatsapp_accounts (status)",
    )


async def test_lint_flags_laravel_whatsapp_accounts_key(database_url: str) -> None:
    await execute(database_url, *laravel_tables(backend(database_url)))
    url = plain(database_url)
    lint = await report(url, "--lint", expect=1)
    # Only the status key: not the session_id key, not the plain indexes that contain status.
    assert kinds(lint) == {
        ("status_in_unique_key", "whatsapp_accounts", "unique_active_phone_workspace")
    }
    detail = lint["findings"][0]["detail"]
    assert "UNIQUE(phone_number, workspace_id, status)" in detail
    assert ("an ENUM column" in detail) is (backend(url) == "mysql")
    assert "active_phone_number" in detail

    # Not wagate's database at all: every wagate table is missing, nothing was migrated.
    diff = await report(url, expect=1)
    assert ("extra_table", "whatsapp_accounts", "whatsapp_accounts") in kinds(diff)
    assert ("missing_table", "accounts", "accounts") in kinds(diff)
    assert "revision_missing" in {f["kind"] for f in diff["findings"]}


async def test_lint_knows_native_enums_and_partial_keys_on_postgres(fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    url = await fresh_database_url("postgres")
    await execute(
        url,
        "CREATE TYPE link_mode AS ENUM ('qr', 'code')",
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, phone VARCHAR(20), status VARCHAR(20),"
        " mode link_mode)",
        # Typed as an ENUM, whatever its name.
        "CREATE UNIQUE INDEX uq_sessions_phone_mode ON sessions (phone, mode)",
        # The status only chooses the rows: one connected row per phone, the right shape.
        "CREATE UNIQUE INDEX uq_sessions_connected_phone ON sessions (phone)"
        " WHERE status = 'connected'",
    )
    lint = await report(url, "--lint", expect=1)
    assert kinds(lint) == {("status_in_unique_key", "sessions", "uq_sessions_phone_mode")}
    assert "an ENUM column `mode`" in lint["findings"][0]["detail"]


def _upgrade_to(conn: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    with warnings.catch_warnings():
        # MySQL names every primary key PRIMARY and says so for each named one.
        warnings.filterwarnings("ignore", message=".*ignored for PRIMARY key")
        command.upgrade(cfg, revision)


async def test_older_revision_is_reported(database_url: str) -> None:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0001")
    finally:
        await engine.dispose()
    data = await report(database_url, expect=1)
    assert kinds(data) == {
        ("missing_table", "messages", "messages"),
        ("missing_table", "webhook_deliveries", "webhook_deliveries"),
        ("missing_table", "nodes", "nodes"),
        ("missing_table", "leases", "leases"),
        ("missing_table", "link_starts", "link_starts"),
        ("revision_behind", "alembic_version", "0001"),
    }
    assert data["revision"] == "0001"


async def test_columns_indexes_and_tables_drift(database_url: str) -> None:
    url = await migrated(database_url)
    kind = backend(url)
    drop = "DROP INDEX ix_link_attempts_started_at"
    statements = [
        f"{drop} ON link_attempts" if kind == "mysql" else drop,
        "ALTER TABLE accounts ADD COLUMN qr_code TEXT NULL",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
    ]
    expected = {
        ("missing_index", "link_attempts", "ix_link_attempts_started_at"),
        ("extra_column", "accounts", "qr_code"),
        ("extra_table", "notes", "notes"),
    }
    if kind != "sqlite":  # SQLite cannot alter a column in place
        statements += {
            "mysql": [
                "ALTER TABLE messages MODIFY wa_id VARCHAR(128) NOT NULL",
                "ALTER TABLE accounts MODIFY last_seq VARCHAR(20) NOT NULL",
                "ALTER TABLE messages DROP FOREIGN KEY fk_messages_account_id_accounts",
            ],
            "postgresql": [
                "ALTER TABLE messages ALTER COLUMN wa_id SET NOT NULL",
                "ALTER TABLE accounts ALTER COLUMN last_seq TYPE VARCHAR(20)",
                "ALTER TABLE messages DROP CONSTRAINT fk_messages_account_id_accounts",
            ],
        }[kind]
        statements.append("ALTER TABLE accounts DROP CONSTRAINT ck_accounts_status")
        expected |= {
            ("column_nullable", "messages", "wa_id"),
            ("column_type", "accounts", "last_seq"),
            ("missing_foreign_key", "messages", "fk_messages_account_id_accounts"),
            ("missing_check", "accounts", "ck_accounts_status"),
        }
    await execute(url, *statements)
    data = await report(url, expect=1)
    assert kinds(data) == expected
    details = {f["name"]: f["detail"] for f in data["findings"]}
    if kind != "sqlite":
        assert details["last_seq"] == "expected integer, found string"
        assert details["wa_id"] == "expected NULL, found NOT NULL"
    code, out, _ = await doctor("--db", url)
    assert code == 1
    assert "ix_link_attempts_started_at" in out


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/wagate",
        "mysql+pymysql://root@127.0.0.1:1/wagate",
        "mysql://root@127.0.0.1",
        "not a url",
        "oracle://scott@127.0.0.1/orcl",
    ],
)
@pytest.mark.parametrize("mode", [(), ("--lint",)])
async def test_unreachable_or_unusable_database_exits_2(url: str, mode: tuple[str, ...]) -> None:
    code, out, err = await doctor("--db", url, *mode)
    assert code == 2, (out, err)
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


async def test_missing_sqlite_file_exits_2_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for mode in ((), ("--lint",)):
        code, _, err = await doctor("--db", f"sqlite:///{missing}", *mode)
        assert code == 2
        assert err.strip() == f"error: no SQLite database file at {missing}"
    assert list(tmp_path.iterdir()) == []


async def test_file_that_is_not_a_database_exits_2(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("not a database, just words\n" * 100)
    code, _, err = await doctor("--db", f"sqlite:///{notes}")
    assert code == 2
    assert "not a database" in err
    assert notes.read_text() == "not a database, just words\n" * 100


async def test_database_that_does_not_exist_exits_2() -> None:
    server = make_url(service_url("postgres"))
    code, _, err = await doctor("--db", server.set(database="wagate_no_such_db").render_as_string())
    assert code == 2
    assert "wagate_no_such_db" in err


@pytest.mark.parametrize(
    ("name", "flagged"),
    [
        ("status", True),
        ("state", True),
        ("account_status", True),
        ("session_state", True),
        ("accountStatus", True),
        ("STATUS", True),
        ("status_reason", False),
        ("statement", False),
        ("real_estate", False),
        ("phone_number", False),
    ],
)
def test_status_like_names(name: str, flagged: bool) -> None:
    assert is_status_name(name) is flagged
