"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Types are spelled out here, not imported from wagate.models, so this revision never changes.
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", EVENT_ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("account_id", "seq", name=op.f("uq_events_account_id_seq")),
    )
    op.create_index(
        op.f("ix_events_workspace_id_id"), "events", ["workspace_id", "id"], unique=False
    )

    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("webhook_url", sa.String(length=2048), nullable=True),
        sa.Column("webhook_secret", sa.Text(), nullable=False),
        sa.Column("webhook_format", sa.String(length=16), nullable=False),
        sa.Column("link_policy", sa.String(length=16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "link_policy IN ('replace', 'reject')", name=op.f("ck_workspaces_link_policy")
        ),
        sa.CheckConstraint(
            "webhook_format IN ('wagate', 'blazz')", name=op.f("ck_workspaces_webhook_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=64), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("jid", sa.String(length=100), nullable=True),
        sa.Column(
            "linked_phone",
            sa.String(length=20),
            sa.Computed(
                "CASE WHEN status IN ('connected', 'pairing', 'reconnecting', 'stopped') THEN phone END",
                persisted=True,
            ),
            nullable=True,
        ),
        sa.Column("linked_at", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('connected', 'failed', 'linking', 'logged_out', 'pairing', 'reconnecting', 'stopped', 'unlinked')",
            name=op.f("ck_accounts_status"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_accounts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint(
            "workspace_id", "linked_phone", name=op.f("uq_accounts_workspace_id_linked_phone")
        ),
    )
    op.create_index(
        op.f("ix_accounts_workspace_id_status"),
        "accounts",
        ["workspace_id", "status"],
        unique=False,
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_api_keys_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_workspace_id"), "api_keys", ["workspace_id"], unique=False)

    op.create_table(
        "auth_states",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("ciphertext", BLOB, nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_auth_states_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_auth_states")),
    )
    op.create_table(
        "link_attempts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("first_qr_at", TS, nullable=True),
        sa.Column("qr_count", sa.Integer(), nullable=False),
        sa.Column("paired_at", TS, nullable=True),
        sa.Column("connected_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("last_activity_at", TS, nullable=False),
        sa.Column(
            "open_account_id",
            sa.String(length=36),
            sa.Computed("CASE WHEN ended_at IS NULL THEN account_id END", persisted=True),
            nullable=True,
        ),
        sa.CheckConstraint("method IN ('code', 'qr')", name=op.f("ck_link_attempts_method")),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('cancelled', 'expired', 'failed', 'interrupted', 'linked', 'superseded')",
            name=op.f("ck_link_attempts_outcome"),
        ),
        sa.CheckConstraint(
            "(ended_at IS NULL AND outcome IS NULL) OR (ended_at IS NOT NULL AND outcome IS NOT NULL)",
            name=op.f("ck_link_attempts_closed_has_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_link_attempts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_attempts")),
        sa.UniqueConstraint("open_account_id", name=op.f("uq_link_attempts_open_account_id")),
    )
    op.create_index(
        op.f("ix_link_attempts_account_id_started_at"),
        "link_attempts",
        ["account_id", "started_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_link_attempts_started_at"), "link_attempts", ["started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_link_attempts_started_at"), table_name="link_attempts")
    op.drop_index(op.f("ix_link_attempts_account_id_started_at"), table_name="link_attempts")

    op.drop_table("link_attempts")
    op.drop_table("auth_states")
    op.drop_index(op.f("ix_api_keys_workspace_id"), table_name="api_keys")

    op.drop_table("api_keys")
    op.drop_index(op.f("ix_accounts_workspace_id_status"), table_name="accounts")

    op.drop_table("accounts")
    op.drop_table("workspaces")
    op.drop_index(op.f("ix_events_workspace_id_id"), table_name="events")

    op.drop_table("events")
