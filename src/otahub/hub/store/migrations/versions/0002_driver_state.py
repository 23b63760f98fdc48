"""Driver bookkeeping: device dialect state, update mode/force/driver state, type assignments.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column("dialect_state", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("updates") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default="push")
        )
        batch.add_column(
            sa.Column("force", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("driver_state", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.create_table(
        "type_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_type", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["firmware_packages.id"],
            name=op.f("fk_type_assignments_package_id_firmware_packages"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_type_assignments")),
        sa.UniqueConstraint(
            "device_type", "kind", name=op.f("uq_type_assignments_device_type_kind")
        ),
    )
    op.create_index(
        op.f("ix_type_assignments_package_id"), "type_assignments", ["package_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_type_assignments_package_id"), table_name="type_assignments")
    op.drop_table("type_assignments")
    with op.batch_alter_table("updates") as batch:
        batch.drop_column("driver_state")
        batch.drop_column("force")
        batch.drop_column("mode")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("dialect_state")
