"""The hub's drivers run in the test's own process, where a test can patch them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.hubproc import InProcessHub, in_process_hub


@pytest.fixture
async def inproc_hub(tmp_path: Path) -> AsyncIterator[InProcessHub]:
    async with in_process_hub(tmp_path / "data") as running:
        yield running
