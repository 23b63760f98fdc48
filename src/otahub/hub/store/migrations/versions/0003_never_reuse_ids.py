"""Ids are never reused: SQLite tables rebuilt with AUTOINCREMENT, rows kept.

Without AUTOINCREMENT SQLite gives a new row the highest id in use plus one,
so deleting the newest device (or update, or package) hands its id to the
next one, and anything still naming the old id (a late device reply, a
download URL) lands on the new row. With it, SQLite remembers the highest id
ever used in ``sqlite_sequence``. PostgreSQL's ``SERIAL`` sequences never go
back, so nothing changes there.

Rebuilding a table drops the old one, which with foreign keys enforced would
cascade into every child table: ``Database.migrate`` runs migrations with
foreign keys off, this migration refuses to run otherwise, and checks the
keys itself before it finishes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Parents before children, so each rebuilt child refers to its rebuilt parent.
TABLES = ("firmware_packages", "devices", "updates", "update_transitions", "type_assignments")


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "rebuilding tables with foreign keys enforced would delete child rows; "
            "run migrations through Database.migrate"
        )
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"foreign keys broken by the table rebuild: {broken[:5]}")


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
