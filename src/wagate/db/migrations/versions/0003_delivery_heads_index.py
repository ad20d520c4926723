"""index for each account's oldest pending webhook delivery

Revision ID: 0003
Revises: 0002

The dispatcher looks for each account's oldest pending delivery; (status, account_id, event_id)
answers that from the pending rows alone, however many deliveries an account has had.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_webhook_deliveries_status_account_id_event_id"),
        "webhook_deliveries",
        ["status", "account_id", "event_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_webhook_deliveries_status_account_id_event_id"), table_name="webhook_deliveries"
    )
