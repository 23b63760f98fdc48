"""HTTP download with Range resume against a real (deliberately flaky) server."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from otahub.agent.config import DownloadConfig
from otahub.agent.download import Downloader, DownloadError
from tests.agent.fileserver import FileServer

FAST = DownloadConfig(retries=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=5)


def image(size: int) -> bytes:
    return os.urandom(size)


async def test_whole_file(files: FileServer, tmp_path: Path) -> None:
    data = image(300_000)
    files.files["fw.bin"] = data
    dest = tmp_path / "fw.bin"
    size = await Downloader(FAST).fetch([files.url("fw.bin")], dest, expected_size=len(data))
    assert size == len(data)
    assert dest.read_bytes() == data


async def test_cut_connections_resume_with_range(files: FileServer, tmp_path: Path) -> None:
    data = image(1_000_000)
    files.files["fw.bin"] = data
    files.cut_after, files.cuts_left = 150_000, 5  # five cuts: more than the retry budget
    dest = tmp_path / "fw.bin"
    downloader = Downloader(FAST)
    await downloader.fetch([files.url("fw.bin")], dest, expected_size=len(data))
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    # Every byte the agent got was kept: each retry continued where the last stopped.
    assert downloader.received == len(data)
    assert files.requests[0] is None
    offsets = [int(r.removeprefix("bytes=").rstrip("-")) for r in files.requests[1:] if r]
    assert len(offsets) == 5
    assert offsets == sorted(offsets) and offsets[0] > 0
    # What was lost in flight at each cut is small next to a restart from zero.
    assert files.bytes_sent < len(data) + 5 * 150_000 / 2


async def test_partial_file_on_disk_is_continued(files: FileServer, tmp_path: Path) -> None:
    data = image(200_000)
    files.files["fw.bin"] = data
    dest = tmp_path / "fw.bin"
    dest.write_bytes(data[:123_456])
    downloader = Downloader(FAST)
    await downloader.fetch([files.url("fw.bin")], dest, expected_size=len(data))
    assert dest.read_bytes() == data
    assert downloader.received == len(data) - 123_456
    assert files.requests == ["bytes=123456-"]


async def test_server_ignoring_range_restarts(files: FileServer, tmp_path: Path) -> None:
    data = image(50_000)
    files.files["fw.bin"] = data
    files.honour_range = False
    dest = tmp_path / "fw.bin"
    dest.write_bytes(data[:10_000])
    await Downloader(FAST).fetch([files.url("fw.bin")], dest, expected_size=len(data))
    assert dest.read_bytes() == data


async def test_fallback_url_and_permanent_error(files: FileServer, tmp_path: Path) -> None:
    data = image(10_000)
    files.files["b.bin"] = data
    dest = tmp_path / "fw.bin"
    await Downloader(FAST).fetch([files.url("missing"), files.url("b.bin")], dest)
    assert dest.read_bytes() == data
    with pytest.raises(DownloadError, match="HTTP 404"):
        await Downloader(FAST).fetch([files.url("missing")], tmp_path / "x.bin")


async def test_gives_up_when_nothing_arrives(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="giving up"):
        await Downloader(FAST).fetch(["http://127.0.0.1:9/none"], tmp_path / "x.bin")


class CountingSource:
    """A URL made per attempt, as the EnOS broker's session URLs are."""

    def __init__(self, url: str, refusal: str | None = None) -> None:
        self.url = url
        self.refusal = refusal
        self.resolved = 0

    def __str__(self) -> str:
        return "counting source"

    async def resolve(self) -> str:
        self.resolved += 1
        if self.refusal is not None:
            raise DownloadError(self.refusal)
        return self.url


async def test_url_source_is_resolved_before_every_attempt(
    files: FileServer, tmp_path: Path
) -> None:
    data = image(400_000)
    files.files["fw.bin"] = data
    files.cut_after, files.cuts_left = 100_000, 3
    source = CountingSource(files.url("fw.bin"))
    dest = tmp_path / "fw.bin"
    await Downloader(FAST).fetch([source], dest, expected_size=len(data))
    assert dest.read_bytes() == data
    # One fresh URL per attempt, the first and the three resumes alike.
    assert source.resolved == len(files.requests) == 4
    assert files.requests[1:] == ["bytes=100000-", "bytes=200000-", "bytes=300000-"]


async def test_url_source_refusal_is_not_retried(files: FileServer, tmp_path: Path) -> None:
    source = CountingSource(files.url("fw.bin"), refusal="login refused with code 401")
    with pytest.raises(DownloadError, match="counting source: login refused with code 401"):
        await Downloader(FAST).fetch([source], tmp_path / "fw.bin")
    assert source.resolved == 1
    assert files.requests == []


@pytest.mark.parametrize("expected_size", [0, None])
async def test_empty_image_is_an_empty_file_on_disk(
    files: FileServer, tmp_path: Path, expected_size: int | None
) -> None:
    files.files["empty.bin"] = b""
    dest = tmp_path / "empty.bin"
    size = await Downloader(FAST).fetch([files.url("empty.bin")], dest, expected_size=expected_size)
    assert size == 0
    assert dest.exists() and dest.read_bytes() == b""


async def test_server_sending_another_size_is_not_restarted_forever(
    files: FileServer, tmp_path: Path
) -> None:
    files.files["fw.bin"] = image(1000)
    dest = tmp_path / "fw.bin"
    with pytest.raises(DownloadError, match="giving up after 4 restarts: got 1000 bytes"):
        await asyncio.wait_for(
            Downloader(FAST).fetch([files.url("fw.bin")], dest, expected_size=500), 30
        )
    assert files.calls == ["GET /fw.bin"] * 4
