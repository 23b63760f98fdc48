"""The backup and restore of a data dir, on the files a hub leaves there."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otahub.hub.backup import BackupError, backup, restore
from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.services.firmware import PackageMeta

IMAGE = b"linked firmware\n" * 100


async def _chunks() -> AsyncIterator[bytes]:
    yield IMAGE


async def _data_dir(root: Path) -> tuple[Path, str]:
    """A data dir with one package and a thin-edge file-transfer link to its blob."""
    data = root / "data"
    core = HubCore(CoreConfig(data))
    await core.start()
    try:
        package = await core.firmware.upload(PackageMeta(title="fw", version="1"), _chunks())
    finally:
        await core.close()
    blob = data / "blobs" / "sha256" / package.sha256[:2] / package.sha256
    link = data / "file-transfer" / "child1" / "firmware_update" / "key1"
    link.parent.mkdir(parents=True)
    os.symlink(blob.resolve(), link)
    (data / "file-transfer" / "child1" / "log.txt").write_text("a child's upload\n")
    return data, package.sha256


async def test_file_transfer_links_point_into_the_restored_blob_store(tmp_path: Path) -> None:
    data, sha256 = await _data_dir(tmp_path)
    manifest = backup(data, tmp_path / "backup")
    assert manifest.links == {"file-transfer/child1/firmware_update/key1": sha256}
    assert "file-transfer/child1/log.txt" in manifest.files
    assert not (
        tmp_path / "backup" / "files" / "file-transfer" / "child1" / "firmware_update"
    ).exists()
    restored = tmp_path / "restored"
    restore(tmp_path / "backup", restored)
    link = restored / "file-transfer" / "child1" / "firmware_update" / "key1"
    assert link.is_symlink()
    assert link.resolve().is_relative_to(restored.resolve() / "blobs")
    assert link.read_bytes() == IMAGE
    assert (restored / "file-transfer" / "child1" / "log.txt").read_text() == "a child's upload\n"


async def test_restore_refuses_a_backup_whose_package_lost_its_blob(tmp_path: Path) -> None:
    data, sha256 = await _data_dir(tmp_path)
    backup(data, tmp_path / "backup")
    (tmp_path / "backup" / "blobs" / "sha256" / sha256[:2] / sha256).unlink()
    with pytest.raises(BackupError, match=f"blob {sha256[:12]}"):
        restore(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
