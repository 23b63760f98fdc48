"""HTTP downloads with Range resume, streamed into the caller (nothing is kept).

All devices of a process share one HTTP pool, so a device costs nothing here
until it downloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

#: Bytes handed to the caller at a time.
READ_SIZE = 65536


class DownloadFailed(Exception):
    """The file could not be fetched (the reason is the message)."""


class HttpPool:
    """The process's HTTP client, with a queue in front of its connection pool.

    httpx walks every request queued in its pool whenever a connection frees
    up, so thousands of devices waiting there cost CPU that grows with the
    square of the queue; here they wait on a semaphore, one slot per connection.
    """

    def __init__(self, timeout: float, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        # a device waits for a free slot as long as it takes: with thousands
        # downloading at once the wait is the queue, not a failure
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, pool=None), limits=limits, follow_redirects=True
        )
        self.slots = asyncio.Semaphore(connections)

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        async with self.slots:
            return await self.client.post(url, content=content, headers=headers)

    async def aclose(self) -> None:
        await self.client.aclose()


async def fetch(
    pool: HttpPool,
    url: str,
    *,
    offset: int,
    on_data: Callable[[bytes], None],
    on_restart: Callable[[], None],
    stop_halfway: bool = False,
) -> bool:
    """Fetch ``url`` from byte ``offset`` on into ``on_data``; True if cut short.

    A server that ignores the Range and answers 200 makes the caller start
    over (``on_restart``). With ``stop_halfway`` the transfer is cut (the
    connection closed unread) halfway through what this response carries,
    as a crash or an injected failure would.
    """
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        async with pool.slots, pool.client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and offset:
                return False  # nothing left to fetch
            if response.status_code not in (200, 206):
                raise DownloadFailed(f"GET {url}: HTTP {response.status_code}")
            if offset and response.status_code == 200:
                on_restart()
            stop_after: int | None = None
            if stop_halfway:
                length = int(response.headers.get("content-length") or 2 * READ_SIZE)
                stop_after = max(1, length // 2)
            got = 0
            async for data in response.aiter_raw(READ_SIZE):
                if stop_after is not None and got + len(data) >= stop_after:
                    on_data(data[: stop_after - got])
                    return True
                on_data(data)
                got += len(data)
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"GET {url}: {type(exc).__name__}: {exc}") from None
    return False
