"""``otahub backup`` while the hub runs and updates change, then ``otahub restore``."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.hubproc import HubProcess

IMAGES = {"1.0": b"backup image one\n" * 3000, "2.0": b"backup image two\n" * 5000}


def otahub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otahub", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Churn(threading.Thread):
    """Starts and cancels updates on the hub until told to stop."""

    def __init__(self, http: httpx.Client, devices: list[str]) -> None:
        super().__init__(daemon=True)
        self.http = http
        self.devices = devices
        self.stop = threading.Event()
        self.created = 0
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 2000:
            device = self.devices[n % len(self.devices)]
            version = "1.0" if n % 2 else "2.0"
            body = {"device": device, "title": "bk", "version": version, "replace": True}
            response = self.http.post("/api/v1/updates", json=body)
            if response.status_code != 201:
                self.errors.append(response.text)
                return
            self.created += 1
            if n % 3 == 0:
                self.http.post(f"/api/v1/updates/{response.json()['id']}/cancel")
            n += 1


def _updates_in(database: Path) -> int:
    db = sqlite3.connect(database)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count: int = db.execute("SELECT count(*) FROM updates").fetchone()[0]
        return count
    finally:
        db.close()


def test_backup_while_updates_run_restores_to_a_hub_with_the_same_data(tmp_path: Path) -> None:
    hub = HubProcess(data_dir=tmp_path / "data").start()
    token = (hub.data_dir / "admin.token").read_text().strip()
    http = httpx.Client(
        base_url=hub.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    churn: Churn | None = None
    try:
        for version, data in IMAGES.items():
            r = http.post(
                "/api/v1/firmware", params={"title": "bk", "version": version}, content=data
            )
            assert r.status_code == 201, r.text
        devices = []
        for n in range(4):  # EnOS devices that never connect: their updates stay put
            name = f"bk-{n}"
            r = http.post(
                "/api/v1/devices",
                json={
                    "name": name,
                    "dialect": "enos",
                    "product_key": "pk",
                    "device_key": name,
                    "secret": "s3cret",
                },
            )
            assert r.status_code == 201, r.text
            devices.append(name)
        churn = Churn(http, devices)
        churn.start()
        while churn.created < 5 and churn.is_alive():
            threading.Event().wait(0.05)
        before = churn.created
        made = otahub(
            "backup", str(tmp_path / "backup"), "--data-dir", str(hub.data_dir), cwd=tmp_path
        )
        created_during = churn.created
        assert made.returncode == 0, made.stderr
        assert "backed up 2 package(s)" in made.stdout
    finally:
        if churn is not None:
            churn.stop.set()
            churn.join(30)
        http.close()
        hub.stop()
    assert churn is not None and not churn.errors, churn.errors
    assert created_during > before >= 5  # updates were made while the backup ran
    backed_up = _updates_in(tmp_path / "backup" / "otahub.db")
    assert 5 <= backed_up <= churn.created

    restored_dir = tmp_path / "restored"
    done = otahub(
        "restore", str(tmp_path / "backup"), "--data-dir", str(restored_dir), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "every blob checked" in done.stdout
    restored = HubProcess(data_dir=restored_dir).start()
    try:
        # the admin token came along
        http = httpx.Client(
            base_url=restored.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        packages = http.get("/api/v1/firmware").json()
        assert sorted(p["version"] for p in packages) == ["1.0", "2.0"]
        for package in packages:
            content = http.get(f"/api/v1/firmware/{package['id']}/content").content
            assert hashlib.sha256(content).hexdigest() == package["sha256"]
            assert content == IMAGES[package["version"]]
        updates = http.get("/api/v1/updates", params={"limit": 1000}).json()
        assert len(updates) == backed_up
        assert {u["device"] for u in updates} <= set(devices)
        http.close()
    finally:
        restored.stop()
    assert "Traceback" not in restored.log()


def _small_backup(tmp_path: Path) -> Path:
    hub = HubProcess(data_dir=tmp_path / "data", extra_args=["--no-auth"]).start()
    try:
        r = httpx.post(
            f"{hub.http_url}/api/v1/firmware",
            params={"title": "small", "version": "1"},
            content=b"small image",
            timeout=30,
        )
        assert r.status_code == 201, r.text
        made = otahub(
            "backup", str(tmp_path / "backup"), "--data-dir", str(hub.data_dir), cwd=tmp_path
        )
        assert made.returncode == 0, made.stderr
    finally:
        hub.stop()
    return tmp_path / "backup"


def test_restore_refuses_a_data_dir_with_data_unless_forced(tmp_path: Path) -> None:
    backup = _small_backup(tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    (target / "admin.token").write_text("someone else's\n")
    refused = otahub("restore", str(backup), "--data-dir", str(target), cwd=tmp_path)
    assert refused.returncode == 1
    assert "already holds data" in refused.stderr and "--force" in refused.stderr
    assert (target / "admin.token").read_text() == "someone else's\n"
    forced = otahub("restore", str(backup), "--data-dir", str(target), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (target / "otahub.db").is_file()
    # the data dir is now the backup's: the old token is gone (that hub ran without one)
    assert not (target / "admin.token").exists()
    assert (target / "download-links.key").read_bytes() == (
        backup / "files" / "download-links.key"
    ).read_bytes()


def test_restore_refuses_a_backup_whose_blob_changed(tmp_path: Path) -> None:
    backup = _small_backup(tmp_path)
    (blob,) = [p for p in (backup / "blobs" / "sha256").glob("*/*")]
    blob.write_bytes(b"other bytes")
    refused = otahub("restore", str(backup), "--data-dir", str(tmp_path / "new"), cwd=tmp_path)
    assert refused.returncode == 1
    assert f"blob {blob.name[:12]} holds other bytes" in refused.stderr
    assert not (tmp_path / "new").exists()  # nothing written


def test_backup_refuses_a_target_that_holds_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    target = tmp_path / "backup"
    target.mkdir()
    (target / "keep").write_text("x")
    refused = otahub("backup", str(target), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert refused.returncode == 1
    assert "not empty" in refused.stderr


@pytest.mark.parametrize("url", ["postgresql://otahub:pw@db.example/otahub"])
def test_postgres_backup_prints_pg_dump_guidance_without_the_password(
    tmp_path: Path, url: str
) -> None:
    data = tmp_path / "data"
    (data / "blobs" / "sha256").mkdir(parents=True)
    (data / "admin.token").write_text("t\n")
    made = otahub(
        "backup",
        str(tmp_path / "backup"),
        "--data-dir",
        str(data),
        "--database-url",
        url,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "pg_dump --format=custom" in made.stdout
    assert "pw@" not in made.stdout and "***" in made.stdout
