"""The hub's signing service: re-signing on schedule survives write failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from otahub.hub.services import signing as signing_module
from otahub.hub.services.signing import SigningService
from otahub.signing.keydir import init_keydir


async def test_re_signing_goes_on_after_the_metadata_dir_could_not_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    init_keydir(tmp_path / "keys", datetime.now(UTC))
    service = SigningService.open(
        tmp_path / "data", tmp_path / "keys" / "online", timestamp_lifetime=timedelta(seconds=2)
    )
    monkeypatch.setattr(signing_module, "RETRY_S", 0.05, raising=False)
    assert service.repo.timestamp is not None
    first = service.repo.timestamp.signed.version
    away = tmp_path / "data" / "tuf-away"
    os.rename(service.directory, away)  # every write now fails
    task = asyncio.create_task(service.run())
    try:
        deadline = time.monotonic() + 30
        while "cannot write signed metadata" not in caplog.text:
            assert not task.done(), task
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        os.rename(away, service.directory)
        while service.repo.timestamp.signed.version <= first + 1:
            assert not task.done(), task
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert any(r.levelno == logging.ERROR for r in caplog.records)
