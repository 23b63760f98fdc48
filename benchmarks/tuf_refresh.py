"""What checking signatures costs an agent per update: metadata refresh time and bytes.

Starts ``otahub serve --no-auth --signing-keys`` on free loopback ports with
a fresh key directory, publishes one signed targets metadata listing
``--targets`` packages (the hub checks only the uploaded one against its
file; the others stand for a repository that grew over time), then runs the
agent's own check (``otahub.agent.signed.SignedTargets``: ngclient refresh,
target lookup, length and hashes of a 64 KiB image) in three situations,
``--rounds`` times each:

* first update of a device: only the provisioned root is trusted, so root
  chain, timestamp, snapshot and targets are all fetched;
* nothing published since the last update: the timestamp is fetched (and
  the next root version asked for, a 404); snapshot and targets come from
  the agent's cache;
* one package published since: timestamp, snapshot and targets again.

Prints the median wall time and the bytes received per check.

    .venv/bin/python benchmarks/tuf_refresh.py [--targets 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tuf.api.metadata import TargetFile, Targets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import start_hub

from otahub.agent import signed as signed_module
from otahub.agent.config import DownloadConfig, SigningConfig
from otahub.agent.state import UpdateRecord
from otahub.signing.keydir import init_keydir, signer
from otahub.signing.metadata import parse, sign, target_for_file, to_bytes

RECEIVED = [0]


class CountingFetcher(signed_module._Fetcher):
    def _fetch(self, url: str) -> Iterator[bytes]:
        for chunk in super()._fetch(url):
            RECEIVED[0] += len(chunk)
            yield chunk


def publish(url: str, keys: Path, work: Path, version: str, fillers: int) -> None:
    """Upload one package whose signed targets metadata lists ``fillers`` more targets."""
    image = work / f"{version}.bin"
    image.write_bytes(os.urandom(64 * 1024))
    with httpx.Client(base_url=f"{url}/api/v1", timeout=120) as client:
        md = parse(client.get("/signing/targets").content, Targets)
        for n in range(fillers):
            path = f"filler-{n}/1.0.{n}"
            md.signed.targets[path] = TargetFile(
                length=10_000_000 + n,
                hashes={"sha256": os.urandom(32).hex(), "sha512": os.urandom(64).hex()},
                path=path,
                unrecognized_fields={"custom": {"kind": "firmware"}},
            )
        target = target_for_file(f"bench/{version}", image)
        md.signed.targets[target.path] = target
        md.signed.version += 1
        sign(md, signer(keys, "targets"))
        r = client.post(
            "/firmware",
            params={"title": "bench", "version": version},
            data={"targets": to_bytes(md).decode()},
            files={"file": (image.name, image.read_bytes(), "application/octet-stream")},
        )
        r.raise_for_status()


def check(checker: signed_module.SignedTargets, version: str, image: Path) -> tuple[float, int]:
    RECEIVED[0] = 0
    record = UpdateRecord(key=version, name="bench", version=version)
    start = time.perf_counter()
    result = checker._verify(record, image)
    elapsed = time.perf_counter() - start
    assert result.ok, result.reason
    return elapsed, RECEIVED[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    signed_module._Fetcher = CountingFetcher  # type: ignore[misc]
    work = Path(tempfile.mkdtemp(prefix="otahub-tuf-bench-"))
    proc = None
    try:
        keys = work / "keys"
        init_keydir(keys, datetime.now(UTC))
        proc, url = start_hub(
            work / "data", work / "hub.log", ("--signing-keys", str(keys / "online"))
        )
        publish(url, keys, work, "1", args.targets - 1)
        targets_size = len(httpx.get(f"{url}/tuf/2.targets.json").content)
        config = SigningConfig(root=keys / "root.json", repository=f"{url}/tuf/")
        results: dict[str, list[tuple[float, int]]] = {"first": [], "unchanged": [], "new": []}
        for n in range(args.rounds):
            state = work / f"agent-{n}"
            checker = signed_module.SignedTargets(config, DownloadConfig(), state)
            results["first"].append(check(checker, "1", work / "1.bin"))
            results["unchanged"].append(check(checker, "1", work / "1.bin"))
        # one agent that keeps its cache while packages keep being published
        checker = signed_module.SignedTargets(config, DownloadConfig(), work / "agent-new")
        check(checker, "1", work / "1.bin")
        for n in range(args.rounds):
            version = f"2.{n}"
            publish(url, keys, work, version, 0)
            results["new"].append(check(checker, version, work / f"{version}.bin"))
        print(
            f"{args.targets} targets ({targets_size} bytes of targets metadata), "
            f"{args.rounds} rounds"
        )
        for name, rows in results.items():
            ms = statistics.median(t for t, _ in rows) * 1000
            received = statistics.median(b for _, b in rows)
            print(f"  {name:>9}: median {ms:7.1f} ms, {received:9.0f} bytes received")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
