"""Signed updates end to end: the real agent of every dialect against ``otahub serve``.

The hub runs with ``--signing-keys``; the test holds the key directory, so
it publishes as the publisher and, where a scenario needs it, acts as an
attacker who controls the hub: its blob store and database, and the
metadata files it serves. The agent must refuse everything the
publisher's targets key did not sign, before the install hook runs, and
report it in its dialect's terms. The hub's update record is the oracle.

One hub per dialect serves the module; the tests share it in file order,
and the key rotation comes last. Every tampering is undone afterwards.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tuf.api.metadata import Snapshot, Targets, Timestamp

from otahub.protocols.checksums import MultiHasher
from otahub.signing.keydir import init_keydir, signer
from otahub.signing.keys import load_signer
from otahub.signing.metadata import (
    parse,
    sign,
    snapshot_of,
    target_for_file,
    timestamp_of,
    to_bytes,
    with_target,
)
from otahub.signing.publish import sign_package
from tests.agent.agentproc import AgentProcess
from tests.agent.hubapi import api, path_of, register, start_update, upload, wait_state
from tests.agent.test_thin_edge import Device, agents, install_hook
from tests.hubproc import HubProcess

__all__ = ["agents"]  # the fixture, shared with the thin-edge tests

TITLE = "signed-fw"
DIALECTS = ("thin-edge", "tedge-legacy", "thingsboard", "enos")


@dataclass
class SignedHub:
    hub: HubProcess
    keys: Path
    dialect: str
    #: Each test's device gets its own name.
    devices: int = 0

    @property
    def tuf(self) -> Path:
        return self.hub.data_dir / "tuf"

    def publish(self, version: str, data: bytes, tmp_path: Path) -> dict[str, Any]:
        """Sign ``data`` as ``TITLE/version`` with the targets key and upload both."""
        file = tmp_path / f"{version}.bin"
        file.write_bytes(data)
        with api(self.hub) as client:
            current = parse(client.get("/signing/targets").content, Targets)
            targets = sign_package(
                current,
                file,
                title=TITLE,
                version=version,
                kind="firmware",
                device_type=None,
                signer=signer(self.keys, "targets"),
                now=datetime.now(UTC),
            )
            r = client.post(
                "/firmware",
                params={"title": TITLE, "version": version},
                data={"targets": targets.decode()},
                files={"file": (file.name, data, "application/octet-stream")},
            )
            assert r.status_code == 201, r.text
            package: dict[str, Any] = r.json()
            return package


@pytest.fixture(scope="module", params=DIALECTS)
def signed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SignedHub]:
    dialect: str = request.param
    root = tmp_path_factory.mktemp(f"signed-{dialect}")
    keys = root / "keys"
    init_keydir(keys, datetime.now(UTC))
    hub = HubProcess(
        root / "data", extra_args=["--no-auth", "--signing-keys", str(keys / "online")]
    )
    yield SignedHub(hub.start(), keys, dialect)
    hub.stop()


def agent_config(signed: SignedHub, device: Device, name: str) -> dict[str, Any]:
    """Register ``name`` for the hub's dialect; the agent's config, with [signing]."""
    hub = signed.hub
    config: dict[str, Any] = {
        "dialect": signed.dialect,
        "state_dir": str(device.state_dir),
        "log_level": "DEBUG",
        "mqtt": {"host": "127.0.0.1", "port": hub.mqtt_port, "reconnect_initial": 0.2},
        "version": {"file": str(device.version_file), "name": TITLE},
        "hooks": {"install": install_hook(device), "timeout": 20},
        "download": {"backoff_initial": 0.05, "backoff_max": 0.2},
        "signing": {"root": str(signed.keys / "root.json"), "repository": f"{hub.http_url}/tuf/"},
    }
    if signed.dialect == "thin-edge":
        config["thin_edge"] = {"device_id": name}
    elif signed.dialect == "tedge-legacy":
        register(hub, name=name, dialect="tedge-legacy")
        config["tedge_legacy"] = {"child_id": name}
    elif signed.dialect == "thingsboard":
        register(hub, name=name, dialect="thingsboard", token=f"token-{name}")
        config["thingsboard"] = {"token": f"token-{name}", "chunk_size": 4096}
    else:
        secret = f"secret-{name}"
        register(
            hub, name=name, dialect="enos", product_key="pkSigned", device_key=name, secret=secret
        )
        config["enos"] = {
            "product_key": "pkSigned",
            "device_key": name,
            "device_secret": secret,
            "reply_timeout": 5,
        }
    return config


@pytest.fixture
def device(
    signed: SignedHub, agents: Callable[..., AgentProcess], tmp_path: Path
) -> tuple[Device, str, AgentProcess]:
    """A device with a running agent that checks signatures."""
    signed.devices += 1
    name = f"{signed.dialect}-signed-{signed.devices}"
    dev = Device(tmp_path)
    agent = agents(agent_config(signed, dev, name))
    return dev, name, agent


async def update(signed: SignedHub, name: str, version: str) -> dict[str, Any]:
    update_id = await start_update(signed.hub, name, TITLE, version)
    return await wait_state(signed.hub, update_id)


def assert_refused_before_install(
    signed: SignedHub, result: dict[str, Any], dev: Device, agent: AgentProcess, reason: str
) -> None:
    """Failed in the dialect's own terms, the hook never ran, the agent logged why."""
    assert result["state"] == "failed", result
    assert "installing" not in path_of(result), path_of(result)
    assert "signature check failed: " + reason in (result["reason"] or ""), result
    if signed.dialect == "enos":
        assert result["code"] == "-3", result  # the verification-failed step
    assert dev.hook_runs() == []
    assert dev.version_file.read_text().strip() == "1.0.0"
    assert "signature check failed: " + reason in agent.log()


@contextmanager
def restored(*paths: Path) -> Iterator[None]:
    """Put the files back as they were (and remove new ones) when the block ends."""
    before = {p: p.read_bytes() if p.exists() else None for p in paths}
    try:
        yield
    finally:
        for path, data in before.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)


def online_signer(signed: SignedHub, role: str) -> Any:
    return load_signer(signed.keys / "online" / f"{role}.pem")


def newest(directory: Path, role: str) -> int:
    return max(int(p.name.split(".")[0]) for p in directory.glob(f"*.{role}.json"))


def content(hub: HubProcess, package_id: int) -> bytes:
    with httpx.Client(base_url=hub.http_url) as http:
        return http.get(f"/api/v1/firmware/{package_id}/content").content


def rotate_targets_key(signed: SignedHub) -> subprocess.CompletedProcess[str]:
    """What the publisher runs: a new targets key, root 2, the targets re-signed, sent."""
    argv = ["keys", "rotate", str(signed.keys), "--role", "targets"]
    return subprocess.run(
        [sys.executable, "-m", "otahub", *argv, "--server", signed.hub.http_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- scenarios ------------------------------------------------------------------


async def test_signed_package_installs(
    signed: SignedHub, device: tuple[Device, str, AgentProcess], tmp_path: Path
) -> None:
    dev, name, agent = device
    signed.publish("1.1.0", os.urandom(30_000), tmp_path)
    result = await update(signed, name, "1.1.0")
    assert result["state"] == "succeeded", result
    assert dev.hook_runs() == ["1.1.0"]
    assert f"the image matches the signed target {TITLE}/1.1.0" in agent.log()


async def test_unsigned_package_is_refused_before_install(
    signed: SignedHub, device: tuple[Device, str, AgentProcess]
) -> None:
    dev, name, agent = device
    upload(signed.hub, TITLE, "1.2.0-unsigned", os.urandom(20_000))
    result = await update(signed, name, "1.2.0-unsigned")
    assert_refused_before_install(
        signed, result, dev, agent, f"{TITLE}/1.2.0-unsigned is not signed"
    )


async def test_blob_swapped_on_a_compromised_hub_is_refused_before_install(
    signed: SignedHub, device: tuple[Device, str, AgentProcess], tmp_path: Path
) -> None:
    """The attacker replaces the stored image and recomputes every checksum the hub keeps,
    so the hub serves it and the dialect's own checksum check passes."""
    dev, name, agent = device
    package = signed.publish("1.3.0", os.urandom(20_000), tmp_path)
    evil = os.urandom(20_000)
    hasher = MultiHasher()
    hasher.update(evil)
    sums = {a.value.lower(): v for a, v in hasher.hexdigests().items()}
    blob = signed.hub.data_dir / "blobs" / "sha256" / sums["sha256"][:2] / sums["sha256"]
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(evil)
    with sqlite3.connect(signed.hub.data_dir / "otahub.db") as db:
        db.execute(
            "UPDATE firmware_packages SET size = ?, md5 = ?, sha256 = ?, sha384 = ?, "
            "sha512 = ?, crc32 = ?, murmur3_32 = ?, murmur3_128 = ? WHERE id = ?",
            (
                len(evil),
                *(sums[k] for k in ("md5", "sha256", "sha384", "sha512", "crc32")),
                sums["murmur3_32"],
                sums["murmur3_128"],
                package["id"],
            ),
        )
    served = content(signed.hub, package["id"])
    assert hashlib.sha256(served).hexdigest() == sums["sha256"]  # the hub is fooled
    result = await update(signed, name, "1.3.0")
    assert_refused_before_install(
        signed, result, dev, agent, f"the image does not match the signed target {TITLE}/1.3.0"
    )


async def test_expired_timestamp_is_refused_before_install(
    signed: SignedHub, device: tuple[Device, str, AgentProcess], tmp_path: Path
) -> None:
    """A frozen hub: the newest timestamp it can show expired (signed by the real key)."""
    dev, name, agent = device
    signed.publish("1.4.0", os.urandom(20_000), tmp_path)
    path = signed.tuf / "timestamp.json"
    with restored(path):
        current = parse(path.read_bytes(), Timestamp)
        snapshot = parse(
            (signed.tuf / f"{newest(signed.tuf, 'snapshot')}.snapshot.json").read_bytes(),
            Snapshot,
        )
        stale = timestamp_of(
            snapshot,
            current.signed.version + 1,
            datetime.now(UTC) - timedelta(days=2),
            timedelta(days=1),
        )
        path.write_bytes(to_bytes(sign(stale, online_signer(signed, "timestamp"))))
        result = await update(signed, name, "1.4.0")
    assert_refused_before_install(signed, result, dev, agent, "the signed metadata has expired")


async def test_rolled_back_metadata_is_refused_before_install(
    signed: SignedHub, device: tuple[Device, str, AgentProcess], tmp_path: Path
) -> None:
    """The hub shows an older (validly signed) timestamp than the agent has already seen."""
    dev, name, _ = device
    signed.publish("1.5.0", os.urandom(20_000), tmp_path)
    path = signed.tuf / "timestamp.json"
    old = path.read_bytes()
    signed.publish("1.6.0", os.urandom(20_000), tmp_path)
    result = await update(signed, name, "1.6.0")
    assert result["state"] == "succeeded", result
    with restored(path):
        path.write_bytes(old)
        result = await update(signed, name, "1.5.0")
    assert result["state"] == "failed", result
    assert "installing" not in path_of(result)[-3:], path_of(result)
    assert "signature check failed: the signed metadata was rolled back" in result["reason"]
    assert dev.hook_runs() == ["1.6.0"]
    assert dev.version_file.read_text().strip() == "1.6.0"


async def test_after_a_targets_key_rotation_new_signatures_install_and_old_ones_are_refused(
    signed: SignedHub, device: tuple[Device, str, AgentProcess], tmp_path: Path
) -> None:
    dev, name, agent = device
    old_key = signer(signed.keys, "targets")
    rotated = rotate_targets_key(signed)
    assert rotated.returncode == 0, rotated.stderr
    assert "the hub serves root version 2" in rotated.stdout

    # the agent, provisioned with root 1, follows the chain and installs what the new key signed
    signed.publish("2.0.0", os.urandom(20_000), tmp_path)
    result = await update(signed, name, "2.0.0")
    assert result["state"] == "succeeded", result
    assert dev.hook_runs() == ["2.0.0"]

    # the hub refuses metadata signed with the old key ...
    file = tmp_path / "old.bin"
    file.write_bytes(os.urandom(20_000))
    with api(signed.hub) as client:
        current = parse(client.get("/signing/targets").content, Targets)
    by_old = sign(
        with_target(current, target_for_file(f"{TITLE}/2.1.0", file), datetime.now(UTC)), old_key
    )
    with api(signed.hub) as client:
        r = client.post(
            "/firmware",
            params={"title": TITLE, "version": "2.1.0"},
            data={"targets": to_bytes(by_old).decode()},
            files={"file": ("old.bin", file.read_bytes(), "application/octet-stream")},
        )
    assert r.status_code == 422, r.text
    assert "not signed by the root's targets key" in r.json()["detail"]

    # ... and so does the agent when a compromised hub serves it anyway
    upload(signed.hub, TITLE, "2.1.0", file.read_bytes())
    targets_version = by_old.signed.version
    snapshot_version = newest(signed.tuf, "snapshot") + 1
    timestamp = signed.tuf / "timestamp.json"
    ts_version = parse(timestamp.read_bytes(), Timestamp).signed.version + 1
    files = [
        signed.tuf / f"{targets_version}.targets.json",
        signed.tuf / f"{snapshot_version}.snapshot.json",
        timestamp,
    ]
    with restored(*files):
        now = datetime.now(UTC)
        snapshot = sign(
            snapshot_of(by_old, snapshot_version, now), online_signer(signed, "snapshot")
        )
        files[0].write_bytes(to_bytes(by_old))
        files[1].write_bytes(to_bytes(snapshot))
        ts = timestamp_of(snapshot, ts_version, now, timedelta(days=1))
        timestamp.write_bytes(to_bytes(sign(ts, online_signer(signed, "timestamp"))))
        result = await update(signed, name, "2.1.0")
    assert result["state"] == "failed", result
    assert (
        "signature check failed: the signed metadata was refused: UnsignedMetadataError"
        in (result["reason"])
    ), result
    assert dev.hook_runs() == ["2.0.0"]
    assert "UnsignedMetadataError" in agent.log()
