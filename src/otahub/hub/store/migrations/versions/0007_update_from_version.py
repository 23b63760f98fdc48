"""Each update records the version its device ran when it was created.

The line logged when an update ends says "from -> to"; kept in memory only,
the "from" was lost whenever the hub restarted. Existing updates get none.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Keep what 0003 gave the table, should SQLite rebuild it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("updates", table_kwargs=KEEP) as batch:
        batch.add_column(sa.Column("from_version", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("updates", table_kwargs=KEEP) as batch:
        batch.drop_column("from_version")
