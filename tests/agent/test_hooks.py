"""Install hook outcomes with real subprocesses."""

from __future__ import annotations

import time
from pathlib import Path

from otahub.agent.hooks import HookOutcome, render, run_hook


async def test_success_substitutes_values_without_reparsing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = await run_hook(
        f"sh -c 'printf %s \"$1|$2|$3\" > {out}' hook {{file}} {{name}} {{version}}",
        {"file": "/tmp/a b", "name": "fw; rm -rf /", "version": "1.0.1"},
        timeout=10,
    )
    assert result.outcome is HookOutcome.OK
    assert out.read_text() == "/tmp/a b|fw; rm -rf /|1.0.1"


async def test_reboot_required_exit_code() -> None:
    result = await run_hook("sh -c 'exit 100'", {}, timeout=10, reboot_exit_code=100)
    assert result.outcome is HookOutcome.REBOOT_REQUIRED
    assert result.exit_code == 100


async def test_failure_carries_stderr_tail() -> None:
    script = (
        'for i in $(seq 1 500); do echo noise $i >&2; done; echo "flash write error" >&2; exit 3'
    )
    result = await run_hook(f"sh -c '{script}'", {}, timeout=10, what="install hook")
    assert result.outcome is HookOutcome.FAILED
    assert result.exit_code == 3
    assert result.reason is not None
    assert result.reason.startswith("install hook failed (exit code 3): ")
    assert result.reason.endswith("flash write error")
    assert len(result.reason) < 1200


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    started = time.monotonic()
    result = await run_hook(
        f"sh -c 'sleep 30; touch {marker}'", {}, timeout=0.5, what="install hook"
    )
    assert time.monotonic() - started < 5
    assert result.outcome is HookOutcome.FAILED
    assert result.reason == "install hook timed out after 0.5 s"
    assert not marker.exists()


async def test_missing_program() -> None:
    result = await run_hook("/nonexistent/hook {file}", {"file": "x"}, timeout=5)
    assert result.outcome is HookOutcome.FAILED
    assert result.reason is not None and "could not start" in result.reason


def test_render_splits_before_substituting() -> None:
    assert render("install.sh --file={file} '{name}'", {"file": "a b", "name": "x"}) == [
        "install.sh",
        "--file=a b",
        "x",
    ]
