"""Database latency: every statement the engine sends, timed around the driver call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_STARTED = "otahub_statement_started"


def time_statements(engine: Engine, observe: Callable[[float], None]) -> None:
    """Call ``observe`` with the seconds each statement on ``engine`` took."""

    def before(conn: Any, *_args: Any) -> None:
        conn.info.setdefault(_STARTED, []).append(time.perf_counter())

    def after(conn: Any, *_args: Any) -> None:
        started = conn.info.get(_STARTED)
        if started:
            observe(time.perf_counter() - started.pop())

    def failed(context: Any) -> None:
        # a statement that raised still took its time; its start must not linger
        conn = context.connection
        started = None if conn is None else conn.info.get(_STARTED)
        if started:
            observe(time.perf_counter() - started.pop())

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
