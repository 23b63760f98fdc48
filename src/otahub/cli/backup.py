"""``otahub backup DIR`` / ``otahub restore DIR``: run on the hub's machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otahub.cli.client import fail, out

DataDir = Annotated[Path, typer.Option(help="The hub's data dir.")]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        help="The hub's database URL when it is not SQLite in the data dir.",
        envvar="OTAHUB_DATABASE_URL",
        show_default=False,
    ),
]


def backup(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="A new, empty directory.", show_default=False)
    ],
    data_dir: DataDir = Path("otahub-data"),
    database_url: DatabaseUrl = None,
) -> None:
    """Copy the hub's database and blob store to DIR, consistently, while it runs."""
    from otahub.hub.backup import BackupError, postgres_guidance
    from otahub.hub.backup import backup as run_backup

    try:
        manifest = run_backup(data_dir, directory, database_url=database_url)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    what = (
        f"{len(manifest.packages)} package(s) in a database snapshot, "
        if manifest.database == "sqlite"
        else ""
    )
    out.print(
        f"backed up {what}{len(manifest.blobs)} blob(s) and {len(manifest.files)} file(s) "
        f"to {directory}"
    )
    if database_url is not None and manifest.database == "postgresql":
        out.print(postgres_guidance(database_url, directory))


def restore(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="A backup directory.", show_default=False)
    ],
    data_dir: DataDir = Path("otahub-data"),
    force: Annotated[
        bool, typer.Option("--force", help="Replace what the data dir already holds.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Restore a backup into the data dir, with the hub stopped.

    Every blob is checked against its package's SHA-256 before anything is written.
    """
    from otahub.hub.backup import BackupError, postgres_guidance
    from otahub.hub.backup import restore as run_restore

    try:
        manifest = run_restore(directory, data_dir, force=force)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    out.print(
        f"restored {len(manifest.blobs)} blob(s) and {len(manifest.files)} file(s) "
        f"into {data_dir} from the backup of {manifest.created_at}; every blob checked"
    )
    if manifest.database == "postgresql":
        if database_url is None:
            out.print("the database is PostgreSQL: restore it with pg_restore (see --help)")
        else:
            out.print(postgres_guidance(database_url, directory, restore=True))
