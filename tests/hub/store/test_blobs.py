"""The content-addressed file blob store."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import pytest

from otahub.hub.store.blobs import FileBlobStore
from otahub.protocols.checksums import Algorithm


async def test_write_commit_read(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    data = os.urandom(3 * 1024 * 1024 + 17)  # crosses the internal flush size
    async with store.begin() as upload:
        for i in range(0, len(data), 65536):
            await upload.write(data[i : i + 65536])
        info = await upload.commit()
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.checksums[Algorithm.MD5] == hashlib.md5(data).hexdigest()
    assert info.checksums[Algorithm.CRC32] == zlib.crc32(data).to_bytes(4, "little").hex()
    path = store.local_path(info.sha256)
    assert path is not None
    assert path.read_bytes() == data
    assert path == tmp_path / "blobs" / "sha256" / info.sha256[:2] / info.sha256
    assert await store.exists(info.sha256)
    assert b"".join([c async for c in store.read(info.sha256, 100, 5000)]) == data[100:5000]
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


async def test_abort_leaves_nothing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(RuntimeError):
        async with store.begin() as upload:
            await upload.write(b"half a file")
            raise RuntimeError("client went away")
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


async def test_reset_starts_over(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    async with store.begin() as upload:
        await upload.write(b"garbage")
        await upload.reset()
        await upload.write(b"content")
        info = await upload.commit()
    assert info.sha256 == hashlib.sha256(b"content").hexdigest()
    assert info.size == 7


async def test_delete_and_stale_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = FileBlobStore(root)
    async with store.begin() as upload:
        await upload.write(b"x")
        info = await upload.commit()
    (root / "tmp" / "upload-dead").write_bytes(b"left by a crash")
    FileBlobStore(root)  # a restart removes partial uploads
    assert list((root / "tmp").iterdir()) == []
    await store.delete(info.sha256)
    await store.delete(info.sha256)  # twice is fine
    assert store.local_path(info.sha256) is None


def test_rejects_non_digest_keys(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(ValueError, match="SHA-256"):
        store.path_for("../../etc/passwd")
