"""What the hub's download responses send, counted as they send it."""

from __future__ import annotations


class DownloadStats:
    """Plain counters, updated per response and per chunk, read at scrape time."""

    __slots__ = ("active", "bytes_sent", "started")

    def __init__(self) -> None:
        self.active = 0
        self.started = 0
        self.bytes_sent = 0
