"""Device labels: key=value pairs that groups and rollouts select devices by.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Keep what 0003 gave the table, should SQLite rebuild it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.add_column(
            sa.Column("labels", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.drop_column("labels")
