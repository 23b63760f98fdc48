"""Event-loop lag: how late a timer fires, which is how long handlers held the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

INTERVAL_S = 0.5


async def watch_loop_lag(observe: Callable[[float], None], interval: float = INTERVAL_S) -> None:
    """Forever: sleep ``interval`` and report how much longer it took."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - start - interval))
