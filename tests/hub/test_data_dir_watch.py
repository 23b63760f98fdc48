from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from otahub.hub.data_dir_watch import DataDirGone, watch_paths


async def test_a_path_removed_before_the_watch_first_runs_is_seen_as_removed(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    watch = watch_paths([data], interval_s=0.01)
    shutil.rmtree(data)  # right after start-up, before the watching task got to run
    with pytest.raises(DataDirGone, match="was removed while the hub ran"):
        await watch


async def test_a_path_replaced_is_seen_as_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    watch = watch_paths([data], interval_s=0.01)
    data.rename(tmp_path / "old")
    data.mkdir()
    with pytest.raises(DataDirGone, match="was replaced while the hub ran"):
        await watch
