"""``otahub simulate``'s command line: help, and bad options refused before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.hubproc import HubProcess, free_port


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otahub", "simulate", *args],
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_simulate_help_renders_every_option_and_says_how_to_clear_faults() -> None:
    result = simulate("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--register", "--fail-at", "--crash-rate", "--processes", "--endpoints"):
        assert option in result.stdout
    assert "SIGUSR1" in result.stdout


def test_bad_options_are_refused_with_the_option_named() -> None:
    for args, named in (
        (["--fail-rate", "1.5"], "--fail-rate"),
        (["--dialect", "zigbee"], "--dialect"),
        (["--endpoints", "http://127.0.0.1:80"], "--endpoints"),
        (["--prefix", "a/b"], "--prefix"),
    ):
        result = simulate(*args, "--duration", "0")
        assert result.returncode == 2, (args, result.stdout)
        assert named in result.stderr, (args, result.stderr)


def test_register_against_no_hub_fails_in_one_line(hub: HubProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = simulate("--register", "--http", dead, "--devices", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: registering devices"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_with_every_device_offline_ends_with_a_summary(hub: HubProcess) -> None:
    result = simulate(
        "--hub",
        f"mqtt://127.0.0.1:{hub.mqtt_port}",
        "--devices",
        "3",
        "--offline-rate",
        "1",
        "--duration",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["devices"] == 3
    assert summary["connected"] == 0
    assert summary["faults"] == {"offline": 3}
