from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otahub import mqtt
from tests.hubproc import HubProcess


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    """Start ``otahub serve`` subprocesses; all are stopped after the test."""
    started: list[HubProcess] = []

    def start(
        *extra_args: str, env: dict[str, str] | None = None, data_dir: Path | None = None
    ) -> HubProcess:
        hub = HubProcess(
            data_dir=data_dir or tmp_path / f"data{len(started)}",
            extra_args=list(extra_args),
            env=env or {},
        )
        started.append(hub)
        return hub.start()

    yield start
    for hub in started:
        hub.stop()


@pytest.fixture
def hub(hub_factory: Callable[..., HubProcess]) -> HubProcess:
    """A running hub on free ports with admin auth off."""
    return hub_factory("--no-auth")


def pytest_sessionstart(session: pytest.Session) -> None:
    # An in-place build runs the compiled endpoint whatever its source now says:
    # testing it would test the old code.
    stale = mqtt.stale_compiled_modules()
    if stale:
        pytest.exit(
            f"otahub.mqtt modules {', '.join(stale)} changed after they were compiled: "
            "rebuild with `bash scripts/test.sh` (or `pip install -e .`)",
            returncode=2,
        )
