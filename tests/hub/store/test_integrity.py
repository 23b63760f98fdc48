"""The blob store's SHA-256 verdicts: made once per file state, off the event loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from otahub.hub.store import integrity
from otahub.hub.store.blobs import FileBlobStore
from otahub.hub.store.integrity import BlobMismatch, FileStamp, VerdictCache


async def _store_with_blob(root: Path, size: int = 200_000) -> tuple[FileBlobStore, str, bytes]:
    store = FileBlobStore(root)
    data = os.urandom(size)
    async with store.begin() as upload:
        await upload.write(data)
        info = await upload.commit()
    await _settle()
    return store, info.sha256, data


async def _settle() -> None:
    """Let a file change age past the racy window, as any blob served later has."""
    await asyncio.sleep(integrity.RACY_NS / 1e9 * 1.5)


def _rewrite_in_place(path: Path) -> tuple[os.stat_result, os.stat_result]:
    """Same bytes count, same inode, mtime set back; (stat before, stat after)."""
    before = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(bytes(b ^ 0xFF for b in f.read(3)))
        f.seek(10)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return before, os.stat(path)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread each whole-file hash ran in, one entry per hash."""
    ran: list[str] = []
    real = integrity._hash_file

    def counting(path: Path) -> tuple[FileStamp, str, FileStamp]:
        ran.append(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(integrity, "_hash_file", counting)
    return ran


async def test_a_blob_is_hashed_before_its_first_serve_and_not_again_while_unchanged(
    tmp_path: Path, hashes: list[str]
) -> None:
    store, sha, _ = await _store_with_blob(tmp_path)
    for _ in range(5):
        assert await store.verified_path(sha) == store.path_for(sha)
    assert len(hashes) == 1


def test_a_verdict_made_in_the_tick_its_file_changed_is_not_trusted() -> None:
    """File times come from a coarse clock: a write in the same tick as the read
    behind a verdict keeps the stamp, so such a verdict is checked once more."""
    cache = VerdictCache()
    now = time.time_ns()
    racy = FileStamp(10, now, now, 1, 1)
    cache.remember("a" * 64, racy, "a" * 64)
    assert cache.cached("a" * 64, racy) is None
    settled = FileStamp(10, now, now - 2 * integrity.RACY_NS, 1, 1)
    cache.remember("a" * 64, settled, "a" * 64)
    verdict = cache.cached("a" * 64, settled)
    assert verdict is not None and verdict.ok and not verdict.changed


async def test_after_start_up_a_blob_is_hashed_once_in_a_worker_thread(
    tmp_path: Path, hashes: list[str]
) -> None:
    _, sha, _ = await _store_with_blob(tmp_path)
    restarted = FileBlobStore(tmp_path)  # a new process knows no verdicts
    paths = await asyncio.gather(*(restarted.verified_path(sha) for _ in range(20)))
    assert set(paths) == {restarted.path_for(sha)}
    assert len(hashes) == 1  # 20 concurrent first requests share one hash
    assert hashes[0] != threading.main_thread().name


async def test_same_size_rewrite_with_mtime_set_back_is_seen_through_ctime(
    tmp_path: Path, hashes: list[str]
) -> None:
    store, sha, _ = await _store_with_blob(tmp_path)
    before, after = _rewrite_in_place(store.path_for(sha))
    # what size + mtime + inode alone would take for the same file
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert after.st_ctime_ns != before.st_ctime_ns
    with pytest.raises(BlobMismatch) as caught:
        await store.verified_path(sha)
    assert caught.value.verdict.changed and caught.value.verdict.actual != sha
    await _settle()
    for _ in range(3):
        with pytest.raises(BlobMismatch) as again:
            await store.verified_path(sha)
        assert not again.value.verdict.changed  # the same finding: no second log line
    assert len(hashes) == 2  # once more after the racy window, then cached


async def test_touched_but_intact_blob_is_hashed_again_and_served(
    tmp_path: Path, hashes: list[str]
) -> None:
    store, sha, _ = await _store_with_blob(tmp_path)
    assert await store.verified_path(sha) == store.path_for(sha)
    os.utime(store.path_for(sha))
    await _settle()
    assert await store.verified_path(sha) == store.path_for(sha)
    assert len(hashes) == 2
    assert store.known_intact(sha, os.stat(store.path_for(sha)))


async def test_verify_reads_again_whatever_the_cache_says(
    tmp_path: Path, hashes: list[str]
) -> None:
    store, sha, _ = await _store_with_blob(tmp_path)
    assert await store.verified_path(sha) is not None
    verdict = await store.verify(sha)
    assert verdict.ok and len(hashes) == 2


async def test_missing_blob_is_none_not_corrupt(tmp_path: Path) -> None:
    store, sha, _ = await _store_with_blob(tmp_path)
    await store.delete(sha)
    assert await store.verified_path(sha) is None
    assert (await store.verify(sha)).missing
