"""Several hubs on one database: who delivers each update, and one link signing key.

``updates.claimed_by`` names the hub instance that sends an update's commands
to its device; a hub takes it with a conditional UPDATE before it sends, so
two hubs never issue different commands for one update. ``hub_secrets`` holds
the key download links are signed with, so that every hub honours the links
any of them handed out.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Keep what 0003 gave the table, should SQLite rebuild it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("updates", table_kwargs=KEEP) as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))
    op.create_table(
        "hub_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("hub_secrets")
    with op.batch_alter_table("updates", table_kwargs=KEEP) as batch:
        batch.drop_column("claimed_by")
