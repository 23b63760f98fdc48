"""``otahub serve``'s process: it ends even when something in it refuses to."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_loop_closes_although_a_task_ignores_its_cancellation() -> None:
    result = _run(
        """
        import asyncio, logging
        from otahub.cli.serve import run_async

        logging.basicConfig(level="INFO")

        async def stubborn() -> None:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue

        async def main() -> str:
            asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
            await asyncio.sleep(0)
            return "done"

        print(run_async(main(), close_timeout=0.2))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "shutdown cut short: 1 task(s) did not end: stubborn" in result.stderr


def test_process_exits_with_its_status_although_a_worker_thread_never_ends() -> None:
    result = _run(
        """
        import logging, threading
        from otahub.cli.serve import exit_without_waiting_for_stuck_threads

        logging.basicConfig(level="INFO")
        threading.Thread(target=threading.Event().wait, name="db-worker").start()
        exit_without_waiting_for_stuck_threads(3, timeout=0.2)
        print("not reached")
        """
    )
    assert result.returncode == 3, result.stderr
    assert "not reached" not in result.stdout
    assert "shutdown cut short: threads db-worker still running; exiting" in result.stderr


def test_no_auth_is_refused_beyond_loopback_and_on_a_public_admin_listener(
    tmp_path: Path,
) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otahub", "serve", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "300"},
        )

    for args in (
        ("--host", "0.0.0.0", "--no-auth"),
        ("--host", "localhost", "--admin-port", "1", "--admin-host", "0.0.0.0", "--no-auth"),
    ):
        refused = serve(*args)
        assert refused.returncode == 2, refused.stderr
        assert "only allowed when bound to loopback" in refused.stderr
