"""cluster nodes and session leases

Revision ID: 0004
Revises: 0003

Several gateway processes on one database (DESIGN §13): each heartbeats in ``nodes``, and each
account with a live session or an open attempt has one lease naming the node that serves it, with
an epoch that fences out a previous owner's late writes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("key_fingerprint", sa.String(length=16), nullable=True),
        sa.Column("url", sa.String(length=255), nullable=True),
        sa.CheckConstraint("state IN ('live', 'leaving', 'dead')", name=op.f("ck_nodes_state")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_nodes")),
    )
    op.create_table(
        "leases",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("node", sa.String(length=100), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_leases_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_leases")),
    )
    op.create_index(op.f("ix_leases_node"), "leases", ["node"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_leases_node"), table_name="leases")
    op.drop_table("leases")
    op.drop_table("nodes")
