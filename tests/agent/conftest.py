from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.fileserver import FileServer


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()
