"""The hub's garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from otahub.hub.gc_tuning import YOUNG_THRESHOLD, tune_for_server


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_young_collections_wait_longer_and_start_up_objects_are_frozen(restored: None) -> None:
    kept = [{"started": n} for n in range(1000)]  # lives for the whole process
    middle, old = gc.get_threshold()[1:]
    assert gc.get_freeze_count() == 0
    tune_for_server()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() >= len(kept)
    # collections after start-up no longer walk what was frozen
    assert not any(obj is kept[0] for obj in gc.get_objects())
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # later garbage cycles are still collected
