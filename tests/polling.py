"""Waiting in tests for what another process or task does, with a bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: Callable[[], T], ready: Callable[[T], bool], timeout: float = 30) -> T:
    """Call ``what`` until ``ready`` holds for its answer; that answer."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if ready(got):
            return got
        assert time.monotonic() < deadline, f"never got there: {got}"
        time.sleep(0.05)
