"""Agent download throughput against curl on the same hub URL, and the agent's peak RSS.

Starts `otahub serve --no-auth` on free loopback ports, uploads generated
images through `POST /api/v1/firmware`, then downloads
`GET /api/v1/firmware/{id}/content`:

* throughput: the agent's `Downloader` (in its own process, as the agent
  runs it, writing to disk and fsyncing like the agent does) and `curl -o`,
  alternating, several rounds; the medians and their ratio are printed.
  Both sides time the transfer alone (the child its `fetch`, curl its
  `time_total`), so interpreter start-up is not counted against the agent;
* memory: peak RSS of that child process, sampled with psutil every 5 ms,
  for a small and a large image; the ratio says whether memory use depends
  on the image size.

    .venv/bin/python benchmarks/agent_download.py [--size-mib 256] [--rounds 7]
        [--rss-small-mib 10] [--rss-large-mib 1024]

Exits non-zero when the throughput ratio is below 0.9, the RSS difference
is over 10 %, or a downloaded file differs from the upload.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import RssSampler, start_hub

MIB = 1024 * 1024
BLOCK = MIB
THROUGHPUT_TARGET = 0.9
RSS_TOLERANCE = 0.10


# -- the child: one agent download -----------------------------------------


def child_fetch(url: str, dest: Path) -> None:
    """Run the agent's Downloader once and print how long the transfer took."""
    from otahub.agent.config import DownloadConfig
    from otahub.agent.download import Downloader

    async def run() -> tuple[float, int]:
        downloader = Downloader(DownloadConfig(retries=0))
        start = time.perf_counter()
        size = await downloader.fetch([url], dest)
        return time.perf_counter() - start, size

    seconds, size = asyncio.run(run())
    print(json.dumps({"seconds": seconds, "bytes": size}), flush=True)


# -- the parent ----------------------------------------------------------------


def make_image(path: Path, size: int) -> str:
    """Write ``size`` incompressible bytes to ``path``; returns their SHA-256."""
    digest = hashlib.sha256()
    seed = os.urandom(BLOCK)
    with path.open("wb") as f:
        written, index = 0, 0
        while written < size:
            block = (index.to_bytes(8, "little") + seed[8:])[: size - written]
            f.write(block)
            digest.update(block)
            written += len(block)
            index += 1
    return digest.hexdigest()


def upload(client: httpx.Client, path: Path, title: str) -> str:
    def body() -> object:
        with path.open("rb") as f:
            while block := f.read(BLOCK):
                yield block

    r = client.post(
        "/api/v1/firmware",
        params={"title": title, "version": str(time.time_ns())},
        content=body(),  # type: ignore[arg-type]
        headers={
            "Content-Length": str(path.stat().st_size),
            "Content-Type": "application/octet-stream",
        },
    )
    if r.status_code != 201:
        raise SystemExit(f"upload failed: {r.status_code} {r.text}")
    package_id: str = str(r.json()["id"])
    return package_id


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def agent_download(url: str, dest: Path, *, sample_rss: bool) -> tuple[float, int]:
    """(transfer seconds, peak RSS or 0) of one agent download in its own process.

    RSS is sampled only when asked: the sampler thread takes CPU from a
    2-core machine, which would handicap the agent against curl.
    """
    dest.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child-fetch", url, str(dest)],
        stdout=subprocess.PIPE,
    )
    sampler = RssSampler(proc.pid, interval=0.005)
    if sample_rss:
        sampler.start()
    out, _ = proc.communicate(timeout=900)
    if sample_rss:
        sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"agent download failed (exit {proc.returncode})")
    seconds = float(json.loads(out)["seconds"])
    return seconds, sampler.peak


def settle(path: Path) -> None:
    """Write a downloaded file back and delete it, so the next transfer starts clean."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()


def curl_download(url: str, dest: Path) -> float:
    dest.unlink(missing_ok=True)
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-o", str(dest), "-w", "%{time_total}", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="throughput image size")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rss-small-mib", type=int, default=10)
    parser.add_argument("--rss-large-mib", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=None, help="where files and the hub go")
    parser.add_argument("--child-fetch", nargs=2, metavar=("URL", "DEST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_fetch:
        child_fetch(args.child_fetch[0], Path(args.child_fetch[1]))
        return 0
    if shutil.which("curl") is None:
        raise SystemExit("curl is required as the baseline")

    workdir = Path(tempfile.mkdtemp(prefix="otahub-agent-dl-", dir=args.workdir))
    largest = max(args.size_mib, args.rss_large_mib) * MIB
    # Source image, hub blob and downloaded copy of the largest image at once.
    if shutil.disk_usage(workdir).free < largest * 3.2:
        raise SystemExit(f"need {largest * 3.2 / MIB:.0f} MiB free in {workdir}")
    proc, base = start_hub(workdir / "data", workdir / "hub.log")
    ok = True
    try:
        with httpx.Client(base_url=base, timeout=httpx.Timeout(60.0, read=900.0)) as client:
            image = workdir / "image.bin"
            dest = workdir / "download.bin"

            # Throughput: alternate so both see the same machine conditions.
            size = args.size_mib * MIB
            digest = make_image(image, size)
            url = f"{base}/api/v1/firmware/{upload(client, image, 'throughput')}/content"
            curl_download(url, dest)  # warm the hub's page cache for both sides
            agent_s: list[float] = []
            curl_s: list[float] = []
            for round_no in range(args.rounds):
                # Whoever goes second inherits less disturbance, so the order
                # alternates, and each file is flushed and removed untimed
                # (curl leaves its bytes dirty in the page cache).
                for side in ("agent", "curl") if round_no % 2 == 0 else ("curl", "agent"):
                    if side == "agent":
                        agent_s.append(agent_download(url, dest, sample_rss=False)[0])
                    else:
                        curl_s.append(curl_download(url, dest))
                    settle(dest)
            # Checked once, outside the timed rounds: hashing between rounds
            # disturbed the next transfer on a small machine.
            agent_download(url, dest, sample_rss=False)
            if sha256_of(dest) != digest:
                print("agent download differs from the upload")
                ok = False
            agent_mbs = size / MIB / statistics.median(agent_s)
            curl_mbs = size / MIB / statistics.median(curl_s)
            ratio = agent_mbs / curl_mbs

            # Memory: the same process for a small and a large image.
            peaks: dict[int, int] = {}
            for mib in (args.rss_small_mib, args.rss_large_mib):
                rss_size = mib * MIB
                digest = make_image(image, rss_size)
                package = upload(client, image, f"rss-{mib}")
                image.unlink()
                _, peaks[mib] = agent_download(
                    f"{base}/api/v1/firmware/{package}/content", dest, sample_rss=True
                )
                if sha256_of(dest) != digest:
                    print(f"agent download of {mib} MiB differs from the upload")
                    ok = False
                dest.unlink()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    small, large = peaks[args.rss_small_mib], peaks[args.rss_large_mib]
    rss_ratio = large / small
    print(f"image size:            {args.size_mib} MiB, {args.rounds} rounds each, alternating")
    print(
        f"agent Downloader:      {agent_mbs:.0f} MiB/s median (rounds: "
        + ", ".join(f"{size / MIB / s:.0f}" for s in agent_s)
        + ")"
    )
    print(
        f"curl:                  {curl_mbs:.0f} MiB/s median (rounds: "
        + ", ".join(f"{size / MIB / s:.0f}" for s in curl_s)
        + ")"
    )
    print(f"ratio agent / curl:    {ratio:.2f} (target >= {THROUGHPUT_TARGET})")
    print(
        f"agent peak RSS:        {small / MIB:.1f} MiB for {args.rss_small_mib} MiB, "
        f"{large / MIB:.1f} MiB for {args.rss_large_mib} MiB "
        f"(ratio {rss_ratio:.3f}, target within {RSS_TOLERANCE:.0%})"
    )
    if ratio < THROUGHPUT_TARGET or abs(rss_ratio - 1) > RSS_TOLERANCE:
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
