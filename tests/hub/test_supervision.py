"""A part of the hub that dies stops the hub, which then exits non-zero."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from otahub.hub.app import HubPartFailed, run_hub
from otahub.hub.supervision import Supervisor
from tests.hubproc import HubProcess, in_process_settings


async def _forever() -> None:
    await asyncio.Event().wait()


async def _raise_soon() -> None:
    await asyncio.sleep(0.01)
    raise OSError("disk gone")


async def _return_soon() -> None:
    await asyncio.sleep(0.01)


async def test_a_part_that_raises_is_reported_with_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Supervisor()
    parts.start("steady", _forever())
    parts.start("fragile", _raise_soon())
    await asyncio.wait_for(parts.wait(asyncio.Event()), 10)
    assert parts.failure is not None
    assert (parts.failure.name, parts.failure.why) == ("fragile", "raised OSError: disk gone")
    with pytest.raises(HubPartFailed, match="fragile raised OSError: disk gone"):
        parts.check()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert lines == ["hub part 'fragile' raised OSError: disk gone; stopping the hub"]


async def test_a_lasting_part_that_returns_or_is_cancelled_by_someone_has_died() -> None:
    for start, why in (
        (lambda parts: parts.start("returns", _return_soon()), "ended"),
        (lambda parts: parts.start("cancelled", _forever()).cancel(), "was cancelled"),
    ):
        parts = Supervisor()
        start(parts)
        await asyncio.wait_for(parts.wait(asyncio.Event()), 10)
        assert parts.failure is not None and parts.failure.why == why


async def test_one_shot_parts_may_return_and_parts_stopped_by_the_shutdown_did_not_die() -> None:
    parts = Supervisor()
    await parts.start("resume", _return_soon(), forever=False)
    lasting = parts.start("inbox", _forever())
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(parts.wait(stop), 10)
    parts.stopping()
    lasting.cancel()
    await asyncio.gather(lasting, return_exceptions=True)
    assert parts.failure is None
    parts.check()


@pytest.mark.parametrize("part", ["HTTP server", "update timeouts", "data dir watch"])
async def test_hub_stops_with_an_error_when_one_of_its_parts_dies(
    tmp_path: Path, part: str
) -> None:
    settings = in_process_settings(tmp_path / "data")
    hub = asyncio.create_task(run_hub(settings))
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                if (await client.get(f"http://127.0.0.1:{settings.http_port}/healthz")).is_success:
                    break
            except httpx.TransportError:
                pass
            assert not hub.done(), hub
            await asyncio.sleep(0.05)
    # the HTTP server answers while the hub is still starting its later parts
    for _ in range(600):
        named = [t for t in asyncio.all_tasks() if t.get_name() == part]
        if named:
            break
        await asyncio.sleep(0.05)
    (task,) = named
    task.cancel()
    with pytest.raises(HubPartFailed) as failed:
        await asyncio.wait_for(hub, 30)
    assert (failed.value.failure.name, failed.value.failure.why) == (part, "was cancelled")


def test_serve_exits_non_zero_naming_the_part_when_its_data_dir_is_removed(
    tmp_path: Path, hub_factory: Callable[..., HubProcess]
) -> None:
    hub = hub_factory("--no-auth")
    assert hub.proc is not None
    shutil.rmtree(hub.data_dir)
    try:
        status = hub.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the hub kept running:\n{hub.log()[-3000:]}") from None
    log = hub.log()
    assert status == 1, log[-3000:]
    (line,) = [ln for ln in log.splitlines() if "hub part" in ln]
    assert f"hub part 'data dir watch' raised DataDirGone: {hub.data_dir}" in line
    assert "was removed while the hub ran; stopping the hub" in line
    assert "otahub stopped" in log
