"""Bulk registration: ``otahub device import`` of DEVICES devices into ``otahub serve``.

Writes a JSON Lines file of DEVICES devices (default 10,000), a third each
ThingsBoard (access token, a device type), EnOS (product/device key and
secret, a device type) and thin-edge (no credentials), every one with two
labels, and times ``otahub device import``
(a CLI subprocess: reading the file, one REST batch, the hub's checks, one
transaction, one DeviceCreated event per device) against a fresh
``otahub serve --no-auth`` on SQLite. Target (issue 14): 10,000 devices in
at most 10 s.

Password rows are measured apart (PASSWORDS thin-edge devices with a password,
default 200) because argon2 hashing dominates them on purpose: printed as
seconds per 1,000 password rows, with the argon2 cost of one hash on this
machine for comparison.

    .venv/bin/python benchmarks/bulk_import.py [--devices 10000] [--passwords 200]

Binds 127.0.0.1 only and stops the hub it starts by its pid.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from support import start_hub

TARGET_S = 10.0
TARGET_DEVICES = 10_000


def write_devices(path: Path, n: int, prefix: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            labels = {"site": ("berlin", "paris", "oslo")[i % 3], "ring": str(i % 10)}
            name = f"{prefix}-{i:05}"
            kind = i % 3
            if kind == 0:
                row = {
                    "name": name,
                    "dialect": "thingsboard",
                    "token": f"{prefix}-tok-{i}",
                    "device_type": "CIM-168",
                }
            elif kind == 1:
                row = {
                    "name": name,
                    "dialect": "enos",
                    "product_key": "bench",
                    "device_key": f"{prefix}-dk-{i}",
                    "secret": f"secret-{i}",
                    "device_type": "inverter",
                }
            else:
                row = {"name": name, "dialect": "thin-edge"}
            f.write(json.dumps({**row, "labels": labels}) + "\n")


def write_password_devices(path: Path, n: int, prefix: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = {"name": f"{prefix}-{i:05}", "dialect": "thin-edge", "password": f"pw-{i}"}
            f.write(json.dumps(row) + "\n")


def run_import(url: str, path: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "otahub", "device", "import", str(path), "--server", url],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"import failed:\n{result.stderr}")
    return elapsed


def argon2_seconds(rounds: int = 5) -> float:
    from otahub.hub.device_auth.passwords import hash_password

    started = time.perf_counter()
    for i in range(rounds):
        hash_password(f"pw-{i}")
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=TARGET_DEVICES)
    parser.add_argument("--passwords", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="otahub-bulk-") as tmp:
        work = Path(tmp)
        devices = work / "devices.jsonl"
        passwords = work / "passwords.jsonl"
        write_devices(devices, args.devices, "dev")
        write_password_devices(passwords, args.passwords, "pwdev")
        proc, url = start_hub(work / "data", work / "hub.log")
        try:
            seconds = run_import(url, devices)
            password_seconds = run_import(url, passwords) if args.passwords else 0.0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    scaled = seconds * TARGET_DEVICES / args.devices
    print(f"devices:            {args.devices} (thingsboard, enos, thin-edge; no passwords)")
    print(f"import:             {seconds:.2f} s, {args.devices / seconds:,.0f} devices/s")
    print(
        f"10,000 devices:     {scaled:.2f} s (target <= {TARGET_S:.0f} s, "
        f"ratio {scaled / TARGET_S:.2f} of the budget)"
    )
    if args.passwords:
        per_1000 = password_seconds * 1000 / args.passwords
        print(
            f"password rows:      {args.passwords} in {password_seconds:.2f} s "
            f"= {per_1000:.1f} s per 1,000 (argon2: {argon2_seconds() * 1000:.0f} ms a hash "
            "on one core)"
        )


if __name__ == "__main__":
    main()
