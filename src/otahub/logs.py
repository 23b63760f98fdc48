"""Log output of the hub: plain text lines, or one JSON object per line.

A log call that concerns an update passes what identifies it as fields,
``log.info(..., extra={"update_id": 7, "device": "sensor-7", "dialect": "enos"})``;
the JSON lines carry them as keys of their own, so that a log store can
select by them without parsing the message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

#: The ``extra=`` fields a JSON line carries when the log call gave them.
FIELDS = ("update_id", "device", "dialect")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                event[name] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        # one line whatever the message holds: json.dumps escapes line breaks
        return json.dumps(event, ensure_ascii=False, default=str)


def update_fields(update_id: int, device: str, dialect: str) -> dict[str, object]:
    """The ``extra=`` of a log call about one update."""
    return {"update_id": update_id, "device": device, "dialect": dialect}


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's one handler (stderr), in ``log_format``: text or json."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
