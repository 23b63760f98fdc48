from __future__ import annotations

import stat
from pathlib import Path

from otahub.hub.private_file import write_private


def test_private_file_is_the_owners_only_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    write_private(path, "abc\n")
    write_private(path, "def\n")  # replaced whole
    assert path.read_text() == "def\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]
