"""Install, verify, rollback and reboot hooks: commands the device owner provides.

Exit-code contract of the install hook:

=====================  ==========================================================
exit code              meaning
=====================  ==========================================================
``0``                  installed; the new version runs now
``reboot_exit_code``   installed, reboot required (default ``100``); the agent
                       persists this, and on its next start runs the verify hook
                       (or compares the running version) before reporting
anything else          failed; the last lines of stderr become the reason
killed by timeout      failed, "install hook timed out after N s"
=====================  ==========================================================

The verify hook succeeds with exit 0; any other result counts as "the new
version does not run" and triggers the rollback hook, if configured.

Templates are split into words like a shell command line (``shlex``) and
``{file}``, ``{name}``, ``{version}``, ``{kind}`` are substituted inside each word
afterwards, so a version string from the network can never inject a word or
a shell construct. Use ``sh -c '…'`` explicitly when a shell is wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)

#: How much of stderr is kept for the failure reason.
STDERR_TAIL_BYTES = 1024


class HookOutcome(StrEnum):
    OK = "ok"
    REBOOT_REQUIRED = "reboot_required"
    FAILED = "failed"


@dataclass(frozen=True)
class HookResult:
    outcome: HookOutcome
    exit_code: int | None
    reason: str | None = None


def render(template: str, values: Mapping[str, str]) -> list[str]:
    """Split ``template`` into argv and substitute ``{key}`` placeholders in each word."""
    words = shlex.split(template)
    if not words:
        raise ValueError("empty hook command")
    out = []
    for word in words:
        for key, value in values.items():
            word = word.replace("{" + key + "}", value)
        out.append(word)
    return out


def _tail(data: bytes) -> str:
    text = data[-STDERR_TAIL_BYTES:].decode("utf-8", errors="replace").strip()
    return text


async def run_hook(
    template: str,
    values: Mapping[str, str],
    *,
    timeout: float,
    reboot_exit_code: int | None = None,
    what: str = "hook",
) -> HookResult:
    """Run one hook to completion (or kill it at ``timeout``) and classify its exit."""
    try:
        argv = render(template, values)
    except ValueError as exc:
        return HookResult(HookOutcome.FAILED, None, f"{what} command invalid: {exc}")
    env = {**os.environ, **{f"OTAHUB_{k.upper()}": v for k, v in values.items()}}
    log.info("running %s: %s", what, shlex.join(argv))
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, so a timeout kills children too
        )
    except OSError as exc:
        return HookResult(HookOutcome.FAILED, None, f"{what} could not start: {exc}")
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return HookResult(HookOutcome.FAILED, None, f"{what} timed out after {timeout:g} s")
    code = proc.returncode
    assert code is not None
    if code == 0:
        return HookResult(HookOutcome.OK, 0)
    if reboot_exit_code is not None and code == reboot_exit_code:
        return HookResult(HookOutcome.REBOOT_REQUIRED, code)
    tail = _tail(stderr)
    exit_text = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    reason = f"{what} failed ({exit_text})" + (f": {tail}" if tail else "")
    return HookResult(HookOutcome.FAILED, code, reason)
