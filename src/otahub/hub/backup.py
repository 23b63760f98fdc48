"""``otahub backup`` / ``otahub restore``: the data dir, copied consistently.

A backup directory holds

- ``otahub.db``: the SQLite database, copied with SQLite's online backup API,
  so it is one consistent snapshot even while the hub writes (PostgreSQL:
  the operator runs ``pg_dump``; see ``postgres_guidance``);
- ``blobs/sha256/..``: the blob store (content-addressed, so a blob is the
  same file whenever it is copied), copied after the database snapshot: every
  package in the snapshot has its blob unless it was deleted meanwhile, which
  fails the backup rather than leaving a package without bytes;
- ``files/``: everything else in the data dir (the admin token, the
  download-link key, thin-edge file-transfer files); the file-transfer links
  to firmware are recorded in the manifest and made again on restore;
- ``otahub-backup.json``: the manifest.

A restore checks every blob against its package's SHA-256 and size before it
writes anything, and refuses a data dir that holds data unless forced (then
the data dir's old contents are removed first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from otahub import __version__

MANIFEST = "otahub-backup.json"
DATABASE = "otahub.db"
BLOBS = "blobs"
FILES = "files"
FORMAT = 1
_SQLITE_FILES = (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal")
_CHUNK = 1 << 20


class BackupError(Exception):
    """Something to tell the operator in one line; nothing usable was written."""


@dataclass(slots=True)
class Manifest:
    database: str  # "sqlite" or "postgresql"
    created_at: str
    otahub_version: str = __version__
    format: int = FORMAT
    packages: list[dict[str, object]] = field(default_factory=list)  # id, sha256, size
    blobs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # file-transfer path -> blob sha256

    def write(self, directory: Path) -> None:
        text = json.dumps(
            {name: getattr(self, name) for name in self.__dataclass_fields__}, indent=2
        )
        (directory / MANIFEST).write_text(text + "\n")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            raw = json.loads((directory / MANIFEST).read_text())
        except FileNotFoundError:
            raise BackupError(f"{directory} is not an otahub backup (no {MANIFEST})") from None
        except (OSError, ValueError) as exc:
            raise BackupError(f"{directory / MANIFEST}: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise BackupError(f"{directory / MANIFEST}: not a backup this otahub can read")
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def is_postgres(database_url: str | None) -> bool:
    return database_url is not None and make_url(database_url).drivername.startswith("postgres")


def postgres_guidance(database_url: str, directory: Path, *, restore: bool = False) -> str:
    """What to run for the database part of a PostgreSQL hub's backup or restore."""
    url = make_url(database_url).set(drivername="postgresql")
    shown = url.render_as_string(hide_password=True)
    dump = directory / "otahub.pgdump"
    if restore:
        return (
            f"restore the database with: pg_restore --clean --if-exists --no-owner "
            f"--dbname '{shown}' {dump}"
        )
    return (
        f"back up the database with: pg_dump --format=custom --file {dump} '{shown}' "
        "(the blobs and files copied here match any dump taken after this backup started)"
    )


# -- backup ------------------------------------------------------------------------


def backup(data_dir: Path, target: Path, *, database_url: str | None = None) -> Manifest:
    """Copy ``data_dir`` (a running hub's too) into the new directory ``target``."""
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir}: no such data dir")
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new directory")
    target.mkdir(parents=True, exist_ok=True)
    postgres = is_postgres(database_url)
    manifest = Manifest(
        database="postgresql" if postgres else "sqlite",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if not postgres:
        _snapshot_sqlite(data_dir / DATABASE, target / DATABASE)
        manifest.packages = _packages(target / DATABASE)
    manifest.blobs = _copy_blobs(data_dir / BLOBS, target / BLOBS)
    missing = sorted(
        str(p["sha256"]) for p in manifest.packages if p["sha256"] not in set(manifest.blobs)
    )
    if missing:
        raise BackupError(
            f"the blobs of {len(missing)} package(s) vanished while copying "
            f"(deleted meanwhile?): {', '.join(s[:12] for s in missing)}; run the backup again"
        )
    manifest.files, manifest.links = _copy_files(data_dir, target / FILES)
    manifest.write(target)
    return manifest


def _snapshot_sqlite(source: Path, copy: Path) -> None:
    if not source.is_file():
        raise BackupError(f"{source}: no database (is this the hub's data dir?)")
    # read-only: the backup must never change the hub's database
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # one step: a consistent snapshot under one read lock
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the database {source}: {exc}") from None
    finally:
        src.close()


def _packages(database: Path) -> list[dict[str, object]]:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, sha256, size FROM firmware_packages ORDER BY id").fetchall()
    except sqlite3.Error as exc:
        raise BackupError(f"{database}: {exc}") from None
    finally:
        db.close()
    return [{"id": i, "sha256": sha, "size": size} for i, sha, size in rows]


def _blob_paths(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    base = root / "sha256"
    if base.is_dir():
        for path in base.glob("*/*"):
            if path.is_file() and not path.is_symlink():
                found[path.name] = path
    return found


def _copy_blobs(source: Path, target: Path) -> list[str]:
    copied = []
    for sha256, path in sorted(_blob_paths(source).items()):
        dest = target / "sha256" / sha256[:2] / sha256
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, dest)
        except FileNotFoundError:
            continue  # deleted meanwhile; the package check above decides
        copied.append(sha256)
    return copied


def _copy_files(data_dir: Path, target: Path) -> tuple[list[str], dict[str, str]]:
    """Everything but the database and the blobs; links into the blob store by name."""
    files: list[str] = []
    links: dict[str, str] = {}
    blobs = (data_dir / BLOBS).resolve()
    for path in sorted(data_dir.rglob("*")):
        relative = path.relative_to(data_dir)
        if relative.parts[0] == BLOBS or (len(relative.parts) == 1 and path.name in _SQLITE_FILES):
            continue
        if path.is_symlink():
            with contextlib.suppress(OSError, ValueError):
                pointed = path.resolve(strict=True)
                if pointed.is_relative_to(blobs):
                    links[relative.as_posix()] = pointed.name
            continue
        if not path.is_file():
            continue
        dest = target / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a file-transfer file deleted meanwhile
            shutil.copy2(path, dest)
            files.append(relative.as_posix())
    return files, links


# -- restore -----------------------------------------------------------------------


def has_data(data_dir: Path) -> bool:
    return data_dir.exists() and any(data_dir.iterdir())


def restore(source: Path, data_dir: Path, *, force: bool = False) -> Manifest:
    """Restore the backup in ``source`` into ``data_dir`` (the hub stopped)."""
    manifest = Manifest.read(source)
    if has_data(data_dir) and not force:
        raise BackupError(f"{data_dir} already holds data: restore into an empty one, or --force")
    _verify(source, manifest)
    if force and data_dir.exists():
        # the data dir becomes what was backed up: nothing of its old data stays
        for entry in data_dir.iterdir():
            _remove(entry)
    data_dir.mkdir(parents=True, exist_ok=True)
    if manifest.database == "sqlite":
        shutil.copy2(source / DATABASE, data_dir / DATABASE)
    for sha256 in manifest.blobs:
        relative = Path("sha256") / sha256[:2] / sha256
        (data_dir / BLOBS / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / BLOBS / relative, data_dir / BLOBS / relative)
    for name in manifest.files:
        dest = data_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / FILES / name, dest)
    for name, sha256 in manifest.links.items():
        link = data_dir / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink((data_dir / BLOBS / "sha256" / sha256[:2] / sha256).resolve(), link)
    return manifest


def _verify(source: Path, manifest: Manifest) -> None:
    """Every blob hashes to its name, and every package's blob is there with its size."""
    problems = []
    sizes: dict[str, int] = {}
    for sha256 in manifest.blobs:
        path = source / BLOBS / "sha256" / sha256[:2] / sha256
        try:
            actual, size = _sha256(path)
        except OSError as exc:
            problems.append(f"blob {sha256[:12]}: {exc.strerror or exc}")
            continue
        sizes[sha256] = size
        if actual != sha256:
            problems.append(f"blob {sha256[:12]} holds other bytes (sha256 {actual[:12]})")
    database = source / DATABASE
    packages = _packages(database) if manifest.database == "sqlite" else manifest.packages
    for package in packages:
        sha256 = str(package["sha256"])
        if sha256 not in sizes:
            problems.append(f"package {package['id']}: its blob {sha256[:12]} is missing")
        elif sizes[sha256] != package["size"]:
            problems.append(
                f"package {package['id']}: blob is {sizes[sha256]} bytes, expected "
                f"{package['size']}"
            )
    for name in manifest.files:
        if not (source / FILES / name).is_file():
            problems.append(f"file {name} is missing")
    if problems:
        raise BackupError("the backup does not check out: " + "; ".join(problems))


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
