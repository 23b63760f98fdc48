"""The order in which the hub starts its parts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from otahub.hub.app import run_hub
from otahub.hub.rollouts.engine import RolloutEngine
from tests.hubproc import in_process_settings


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def test_the_rollout_engine_starts_once_devices_can_reach_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A restarted hub resumes its rollouts at once: every update they start goes
    # to a device that must connect and download from this hub.
    settings = in_process_settings(tmp_path / "data")
    seen: asyncio.Future[tuple[bool, bool]] = asyncio.get_running_loop().create_future()

    async def run(self: RolloutEngine, tick_s: float = 0.5) -> None:
        seen.set_result((await _accepts(settings.mqtt_port), await _accepts(settings.http_port)))
        await asyncio.Event().wait()

    monkeypatch.setattr(RolloutEngine, "run", run)
    stop = asyncio.Event()
    hub = asyncio.create_task(run_hub(settings, stop))
    try:
        assert await asyncio.wait_for(seen, 60) == (True, True)
    finally:
        stop.set()
        await asyncio.wait_for(hub, 30)
