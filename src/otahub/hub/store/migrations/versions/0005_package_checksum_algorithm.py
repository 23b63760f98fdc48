"""Each firmware package carries the checksum algorithm ThingsBoard devices verify it with.

Existing packages get SHA256, what the hub sent until now.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Keep what 0003 gave the table, should SQLite rebuild it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("firmware_packages", table_kwargs=KEEP) as batch:
        batch.add_column(
            sa.Column(
                "checksum_algorithm",
                sa.String(length=16),
                nullable=False,
                server_default="SHA256",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("firmware_packages", table_kwargs=KEEP) as batch:
        batch.drop_column("checksum_algorithm")
