"""link starts per workspace

Revision ID: 0005
Revises: 0004

The workspace's link rate limit counted its accounts' attempts, which are deleted with their
account: create an account, link, delete it, and the limit never filled. ``link_starts`` keeps
one row per attempt started, per workspace, whatever happens to the account. Existing attempts
are copied in, so the limits go on counting them after the upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "link_starts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_link_starts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_starts")),
    )
    op.create_index(
        op.f("ix_link_starts_workspace_id_started_at"),
        "link_starts",
        ["workspace_id", "started_at"],
        unique=False,
    )
    op.execute(
        "INSERT INTO link_starts (workspace_id, started_at) "
        "SELECT accounts.workspace_id, link_attempts.started_at FROM link_attempts "
        "JOIN accounts ON accounts.id = link_attempts.account_id"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_link_starts_workspace_id_started_at"), table_name="link_starts")
    op.drop_table("link_starts")
