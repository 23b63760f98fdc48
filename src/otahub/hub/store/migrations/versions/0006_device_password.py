"""Device passwords: thin-edge and tedge-legacy MQTT credentials, stored hashed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Keep what 0003 gave the table, should SQLite rebuild it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.drop_column("password_hash")
