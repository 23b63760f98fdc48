"""Update history outlives its device: updates keep the device's name and dialect.

``updates.device_id`` becomes nullable with ``ON DELETE SET NULL`` (it was
``CASCADE``, so deleting a device deleted its whole history), and each update
records ``device_name`` and ``dialect``, filled from the device for existing
rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FK = "fk_updates_device_id_devices"
# Keep what 0003 gave the table when SQLite rebuilds it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("updates", table_kwargs=KEEP) as batch:
        batch.add_column(sa.Column("device_name", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("dialect", sa.String(length=32), nullable=True))
    op.execute(
        "UPDATE updates SET "
        "device_name = (SELECT name FROM devices WHERE devices.id = updates.device_id), "
        "dialect = (SELECT dialect FROM devices WHERE devices.id = updates.device_id)"
    )
    with op.batch_alter_table("updates", table_kwargs=KEEP) as batch:
        batch.alter_column("device_name", existing_type=sa.String(length=255), nullable=False)
        batch.alter_column("dialect", existing_type=sa.String(length=32), nullable=False)
        batch.alter_column("device_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint(FK, type_="foreignkey")
        batch.create_foreign_key(FK, "devices", ["device_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    op.execute("DELETE FROM updates WHERE device_id IS NULL")
    with op.batch_alter_table("updates", table_kwargs=KEEP) as batch:
        batch.drop_constraint(FK, type_="foreignkey")
        batch.create_foreign_key(FK, "devices", ["device_id"], ["id"], ondelete="CASCADE")
        batch.alter_column("device_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("dialect")
        batch.drop_column("device_name")
