"""Upload and download a 2 GiB firmware file through `otahub serve`; report the hub's peak RSS.

The file is never on the client's disk: the upload body is generated while it
is sent (1 MiB blocks of random data, each made distinct by its index) and
hashed on the way; the download is hashed as it arrives and compared. A
sampler thread reads the hub process's resident set size every 20 ms.

    .venv/bin/python benchmarks/large_file_rss.py [--size-mib 2048] [--limit-mib 200]

Exits non-zero when the peak RSS is over the limit or the bytes do not match.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import RssSampler, start_hub

MIB = 1024 * 1024
BLOCK = MIB


def generated(size: int, digest: hashlib._Hash, progress: list[int]) -> Iterator[bytes]:
    seed = os.urandom(BLOCK)
    sent = 0
    index = 0
    while sent < size:
        # Distinct blocks without holding more than one: the index overwrites
        # the first bytes of the random seed block.
        block = index.to_bytes(8, "little") + seed[8:]
        block = block[: size - sent]
        digest.update(block)
        sent += len(block)
        progress[0] = sent
        index += 1
        yield block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--limit-mib", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None, help="where the hub's data goes")
    args = parser.parse_args()
    size = args.size_mib * MIB

    workdir = Path(tempfile.mkdtemp(prefix="otahub-rss-", dir=args.workdir))
    free = shutil.disk_usage(workdir).free
    if free < size * 1.2:
        raise SystemExit(
            f"need {size * 1.2 / MIB:.0f} MiB free in {workdir}, have {free / MIB:.0f}"
        )
    proc, url = start_hub(workdir / "data", workdir / "hub.log")
    sampler = RssSampler(proc.pid)
    idle_rss = psutil.Process(proc.pid).memory_info().rss
    sampler.start()
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(60.0, read=900.0)) as client:
            sent_digest = hashlib.sha256()
            progress = [0]
            t0 = time.monotonic()
            r = client.post(
                "/api/v1/firmware",
                params={"title": "rss-benchmark", "version": str(time.time_ns())},
                content=generated(size, sent_digest, progress),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
            upload_s = time.monotonic() - t0
            if r.status_code != 201:
                raise SystemExit(f"upload failed: {r.status_code} {r.text}")
            package = r.json()
            upload_peak = sampler.peak

            got = hashlib.sha256()
            received = 0
            t0 = time.monotonic()
            with client.stream("GET", f"/api/v1/firmware/{package['id']}/content") as response:
                response.raise_for_status()
                for chunk in response.iter_bytes(MIB):
                    got.update(chunk)
                    received += len(chunk)
            download_s = time.monotonic() - t0
    finally:
        sampler.stop()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    ok_bytes = package["sha256"] == sent_digest.hexdigest() == got.hexdigest() and received == size
    peak_mib = sampler.peak / MIB
    print(f"file size:         {size / MIB:.0f} MiB")
    print(
        f"upload:            {upload_s:.1f} s ({size / MIB / upload_s:.0f} MiB/s, "
        "all seven checksums computed while streaming)"
    )
    print(f"download:          {download_s:.1f} s ({size / MIB / download_s:.0f} MiB/s)")
    print(f"hub RSS idle:      {idle_rss / MIB:.1f} MiB")
    print(
        f"hub peak RSS:      upload {upload_peak / MIB:.1f} MiB, overall {peak_mib:.1f} MiB "
        f"({sampler.peak_detail}; {sampler.samples} samples)"
    )
    print(f"bytes match:       {'yes' if ok_bytes else 'NO'}")
    verdict = "PASS" if peak_mib < args.limit_mib else "FAIL"
    print(f"limit:             {args.limit_mib} MiB -> {verdict}")
    return 0 if ok_bytes and peak_mib < args.limit_mib else 1


if __name__ == "__main__":
    sys.exit(main())
