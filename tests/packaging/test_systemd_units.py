"""The systemd units in packaging/ load without a complaint from systemd."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
OTAHUB = Path(sys.executable).parent / "otahub"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", ["otahub.service", "otahub-agent.service"])
def test_unit_verifies_cleanly(unit: str, tmp_path: Path) -> None:
    # verify wants the command to exist: this virtualenv's stands in for /usr/bin's
    text = (PACKAGING / unit).read_text().replace("/usr/bin/otahub", str(OTAHUB))
    (tmp_path / unit).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hub_unit_runs_as_its_own_user_confined_to_its_state_directory() -> None:
    settings = {
        line.partition("=")[0]: line.partition("=")[2]
        for line in (PACKAGING / "otahub.service").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["DynamicUser"] == "yes"
    assert settings["User"] == "otahub"
    assert settings["StateDirectory"] == "otahub"
    assert settings["ProtectSystem"] == "strict"
    assert settings["Restart"] == "on-failure"
    assert "--data-dir /var/lib/otahub" in settings["ExecStart"]
    assert "--config /etc/otahub/hub.toml" in settings["ExecStart"]
