"""Device client certificates: the SHA-256 fingerprint and CN of a device's X.509
certificate, by which a TLS client is recognised (``--tls-ca``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Keep what 0003 gave the table, should SQLite rebuild it.
KEEP = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.add_column(sa.Column("cert_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("cert_cn", sa.String(length=255), nullable=True))
        batch.create_unique_constraint("uq_devices_cert_sha256", ["cert_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("devices", table_kwargs=KEEP) as batch:
        batch.drop_constraint("uq_devices_cert_sha256", type_="unique")
        batch.drop_column("cert_cn")
        batch.drop_column("cert_sha256")
