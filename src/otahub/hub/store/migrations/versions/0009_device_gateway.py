"""Thin-edge gateways and the children they registered.

A gateway (``gateway``) may register thin-edge children and act for them;
each child keeps the name of the gateway that registered it (``owner``).
Existing devices are no gateways and belong to none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Keep what 0003 gave the table, should SQLite rebuild it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.add_column(
            sa.Column("gateway", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("owner", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.drop_column("owner")
        batch.drop_column("gateway")
