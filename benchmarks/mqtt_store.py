"""Where the MQTT endpoint keeps its durable state: the append-only log against SQLite.

Each change must reach the operating system before the endpoint acknowledges
it. Measured per store, for 256-byte retained messages over 1,000 topics:

- writes/s of retained messages, each one durable against ``kill -9``
  (the log: one ``write``; SQLite: one committed transaction, WAL);
- start-up: reading back what is stored after 200,000 updates of those
  1,000 topics (the log is compacted as it grows; SQLite keeps one row each).

    .venv/bin/python benchmarks/mqtt_store.py [--messages 200000]

Writes only to a temporary directory, which it removes.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from otahub.mqtt.message import Message
from otahub.mqtt.persistence import LogStore

TOPICS = 1000
PAYLOAD = b"x" * 256


def log_store(path: Path, messages: int, fsync: str) -> tuple[float, float, int]:
    store = LogStore(path, fsync=fsync)
    store.load()
    started = time.perf_counter()
    for n in range(messages):
        store.retained(Message(f"bench/{n % TOPICS}", PAYLOAD, 1, True), "client")
    written = time.perf_counter() - started
    store.close()
    started = time.perf_counter()
    again = LogStore(path, fsync=fsync)
    state = again.load()
    loaded = time.perf_counter() - started
    again.close()
    assert len(state.retained) == min(messages, TOPICS)
    return messages / written, loaded, path.stat().st_size


def sqlite_store(path: Path, messages: int, synchronous: str) -> tuple[float, float, int]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE retained (topic TEXT PRIMARY KEY, owner TEXT, qos INT, payload BLOB)")
    started = time.perf_counter()
    for n in range(messages):
        db.execute(
            "INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?)",
            (f"bench/{n % TOPICS}", "client", 1, PAYLOAD),
        )
    written = time.perf_counter() - started
    db.close()
    started = time.perf_counter()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT topic, owner, qos, payload FROM retained").fetchall()
    loaded = time.perf_counter() - started
    db.close()
    assert len(rows) == min(messages, TOPICS)
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return messages / written, loaded, size


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            ("log, fsync interval", lambda p: log_store(p, args.messages, "interval")),
            ("log, fsync never", lambda p: log_store(p, args.messages, "never")),
            ("sqlite WAL, synchronous NORMAL", lambda p: sqlite_store(p, args.messages, "NORMAL")),
            (
                "sqlite WAL, synchronous FULL",
                lambda p: sqlite_store(p, args.messages // 20, "FULL"),
            ),
        ]
        print(f"{'store':34} {'writes/s':>10} {'start-up s':>11} {'file bytes':>11}")
        for n, (name, run) in enumerate(runs):
            rate, loaded, size = run(Path(tmp) / f"store-{n}")
            print(f"{name:34} {rate:10.0f} {loaded:11.4f} {size:11d}")


if __name__ == "__main__":
    main()
