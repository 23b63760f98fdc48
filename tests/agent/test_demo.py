"""`otahub demo` end to end: a hub and one agent per dialect, all four updated."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_updates_all_four_dialects() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otahub", "demo", "--image-size", "262144", "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all four devices updated" in result.stdout
