"""Initial schema: firmware packages, devices, updates and their transitions.

Revision ID: 0001
Revises: (none)
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("dialect", sa.String(length=32), nullable=False),
        sa.Column("device_type", sa.String(length=255), nullable=True),
        sa.Column("tb_token", sa.String(length=255), nullable=True),
        sa.Column("enos_product_key", sa.String(length=255), nullable=True),
        sa.Column("enos_device_key", sa.String(length=255), nullable=True),
        sa.Column("enos_device_secret", sa.String(length=255), nullable=True),
        sa.Column("current_fw_title", sa.String(length=255), nullable=True),
        sa.Column("current_fw_version", sa.String(length=255), nullable=True),
        sa.Column("current_sw_title", sa.String(length=255), nullable=True),
        sa.Column("current_sw_version", sa.String(length=255), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint(
            "enos_product_key",
            "enos_device_key",
            name=op.f("uq_devices_enos_product_key_enos_device_key"),
        ),
        sa.UniqueConstraint("name", name=op.f("uq_devices_name")),
        sa.UniqueConstraint("tb_token", name=op.f("uq_devices_tb_token")),
    )
    op.create_table(
        "firmware_packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("device_type", sa.String(length=255), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("sha384", sa.String(length=96), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("crc32", sa.String(length=8), nullable=False),
        sa.Column("murmur3_32", sa.String(length=8), nullable=False),
        sa.Column("murmur3_128", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_packages")),
        sa.UniqueConstraint("title", "version", name=op.f("uq_firmware_packages_title_version")),
    )
    with op.batch_alter_table("firmware_packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firmware_packages_sha256"), ["sha256"], unique=False)

    op.create_table(
        "updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("timeout_s", sa.Double(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_updates_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["firmware_packages.id"],
            name=op.f("fk_updates_package_id_firmware_packages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_updates")),
    )
    with op.batch_alter_table("updates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_updates_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_updates_package_id"), ["package_id"], unique=False)
        batch_op.create_index("ix_updates_state_deadline", ["state", "deadline_at"], unique=False)
        batch_op.create_index(
            "uq_updates_active_device_kind",
            ["device_id", "kind"],
            unique=True,
            sqlite_where=sa.text("state NOT IN ('succeeded', 'failed', 'canceled')"),
            postgresql_where=sa.text("state NOT IN ('succeeded', 'failed', 'canceled')"),
        )

    op.create_table(
        "update_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("update_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["update_id"],
            ["updates.id"],
            name=op.f("fk_update_transitions_update_id_updates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_update_transitions")),
    )
    with op.batch_alter_table("update_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_update_transitions_update_id"), ["update_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("update_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_update_transitions_update_id"))

    op.drop_table("update_transitions")
    with op.batch_alter_table("updates", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_updates_active_device_kind",
            sqlite_where=sa.text("state NOT IN ('succeeded', 'failed', 'canceled')"),
            postgresql_where=sa.text("state NOT IN ('succeeded', 'failed', 'canceled')"),
        )
        batch_op.drop_index("ix_updates_state_deadline")
        batch_op.drop_index(batch_op.f("ix_updates_package_id"))
        batch_op.drop_index(batch_op.f("ix_updates_device_id"))

    op.drop_table("updates")
    with op.batch_alter_table("firmware_packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_packages_sha256"))

    op.drop_table("firmware_packages")
    op.drop_table("devices")
