"""Live counts: a line redrawn every second on a terminal, a log line every 10 s otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from otahub.simulator.stats import live_line

LOG_INTERVAL = 10.0


class Display:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_log = time.monotonic()
        self._drawn = False

    def tick(self, counts: dict[str, Any], elapsed: float) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + live_line(counts, elapsed))
            self.stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last_log >= LOG_INTERVAL:
            self._last_log = time.monotonic()
            self.stream.write(live_line(counts, elapsed) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
