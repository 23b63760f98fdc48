"""Signed publishing: ``otahub keys``, ``firmware upload --sign``, ``serve --require-signed``.

The hub runs as ``otahub serve --signing-keys`` with admin auth on; the
CLI signs on the publisher's side and the hub checks what it is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tuf.api.metadata import Targets

from otahub.signing.keydir import init_keydir, rotate, signer
from otahub.signing.metadata import parse, to_bytes
from otahub.signing.publish import sign_package
from tests.cli.test_cli import Cli
from tests.hubproc import HubProcess


class SigningCli(Cli):
    @property
    def keys(self) -> Path:
        return self.cwd / "keys"

    def api(self) -> httpx.Client:
        token = (self.hub.data_dir / "admin.token").read_text().strip()
        return httpx.Client(
            base_url=f"{self.hub.http_url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningCli]:
    cwd = tmp_path_factory.mktemp("signing-cli")
    probe = SigningCli(HubProcess(data_dir=cwd / "otahub-data"), cwd)
    probe.ok("keys", "init", str(cwd / "keys"), server=False)
    hub = HubProcess(
        data_dir=cwd / "otahub-data",
        extra_args=["--signing-keys", str(cwd / "keys" / "online"), "--require-signed"],
    ).start()
    try:
        yield SigningCli(hub, cwd)
    finally:
        hub.stop()


def served_targets(hub: HubProcess) -> dict[str, Any]:
    """The targets the hub serves, walked the way a TUF client does (without auth)."""
    with httpx.Client(base_url=f"{hub.http_url}/tuf", timeout=30) as tuf:
        timestamp = tuf.get("/timestamp.json").json()
        snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        snapshot = tuf.get(f"/{snapshot_version}.snapshot.json").json()
        targets_version = snapshot["signed"]["meta"]["targets.json"]["version"]
        targets: dict[str, Any] = tuf.get(f"/{targets_version}.targets.json").json()
        return targets["signed"]["targets"]


def image(cli: Cli, name: str, size: int = 10_000) -> Path:
    path = cli.cwd / name
    path.write_bytes(os.urandom(size))
    return path


def upload_signed(cli: SigningCli, file: Path, title: str, version: str) -> str:
    return cli.ok(
        "firmware",
        "upload",
        str(file),
        "--title",
        title,
        "--version",
        version,
        "--sign",
        str(cli.keys),
    )


def post_multipart(
    cli: SigningCli, file: Path, title: str, version: str, targets: bytes
) -> httpx.Response:
    with cli.api() as client:
        return client.post(
            "/firmware",
            params={"title": title, "version": version},
            data={"targets": targets.decode()},
            files={"file": (file.name, file.read_bytes(), "application/octet-stream")},
        )


def current_targets(cli: SigningCli) -> Any:
    with cli.api() as client:
        return parse(client.get("/signing/targets").content, Targets)


def test_signed_upload_is_listed_in_the_public_metadata(cli: SigningCli) -> None:
    file = image(cli, "signed.bin", 12_345)
    assert "signed as cli-fw/1.0" in upload_signed(cli, file, "cli-fw", "1.0")
    target = served_targets(cli.hub)["cli-fw/1.0"]
    data = file.read_bytes()
    assert target["length"] == len(data)
    assert target["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert target["hashes"]["sha512"] == hashlib.sha512(data).hexdigest()
    assert target["custom"] == {"kind": "firmware"}


def test_update_of_an_unsigned_package_is_refused_when_signing_is_required(
    cli: SigningCli,
) -> None:
    cli.ok(
        "firmware",
        "upload",
        str(image(cli, "plain.bin")),
        "--title",
        "cli-fw",
        "--version",
        "2.0-unsigned",
    )
    upload_signed(cli, image(cli, "ok.bin"), "cli-fw", "2.0")
    with cli.api() as client:
        assert (
            client.post(
                "/devices", json={"name": "cli-dev", "dialect": "thingsboard", "token": "cli-token"}
            ).status_code
            == 201
        )
        refused = client.post(
            "/updates", json={"device": "cli-dev", "title": "cli-fw", "version": "2.0-unsigned"}
        )
        assert refused.status_code == 409, refused.text
        assert "cli-fw 2.0-unsigned is not signed" in refused.json()["detail"]
        accepted = client.post(
            "/updates", json={"device": "cli-dev", "title": "cli-fw", "version": "2.0"}
        )
        assert accepted.status_code == 201, accepted.text
    assert "refused an update of cli-dev: package cli-fw 2.0-unsigned" in cli.hub.log()


def test_metadata_signed_for_other_bytes_is_refused_and_nothing_is_kept(
    cli: SigningCli,
) -> None:
    signed, other = image(cli, "a.bin"), image(cli, "b.bin")
    targets = sign_package(
        current_targets(cli),
        signed,
        title="cli-fw",
        version="3.0",
        kind="firmware",
        device_type=None,
        signer=signer(cli.keys, "targets"),
        now=datetime.now(UTC),
    )
    response = post_multipart(cli, other, "cli-fw", "3.0", targets)
    assert response.status_code == 422, response.text
    assert "does not match the sha256 of the signed target" in response.json()["detail"]
    assert "cli-fw/3.0" not in served_targets(cli.hub)
    with cli.api() as client:
        assert client.get("/firmware", params={"title": "cli-fw"}).json()[-1]["version"] != "3.0"


def test_metadata_signed_by_a_key_the_root_does_not_name_is_refused(
    cli: SigningCli,
) -> None:
    init_keydir(cli.cwd / "other-keys", datetime.now(UTC))
    file = image(cli, "c.bin")
    for role in ("snapshot", "root"):
        targets = sign_package(
            current_targets(cli),
            file,
            title="cli-fw",
            version="4.0",
            kind="firmware",
            device_type=None,
            signer=signer(cli.keys, role),
            now=datetime.now(UTC),
        )
        response = post_multipart(cli, file, "cli-fw", "4.0", targets)
        assert response.status_code == 422, response.text
        assert "not signed by the root's targets key" in response.json()["detail"]
    foreign = cli.cwd / "other-keys"
    error = cli.fails(
        "firmware",
        "upload",
        str(file),
        "--title",
        "cli-fw",
        "--version",
        "4.0",
        "--sign",
        str(foreign),
    )
    # the publisher's side refuses to sign on top of metadata its root does not trust
    assert "does not verify under your root" in error
    assert "cli-fw/4.0" not in served_targets(cli.hub)


def test_metadata_older_than_the_hub_s_is_refused(cli: SigningCli) -> None:
    stale = current_targets(cli)
    upload_signed(cli, image(cli, "d.bin"), "cli-fw", "5.0")
    file = image(cli, "e.bin")
    targets = sign_package(
        stale,
        file,
        title="cli-fw",
        version="5.1",
        kind="firmware",
        device_type=None,
        signer=signer(cli.keys, "targets"),
        now=datetime.now(UTC),
    )
    response = post_multipart(cli, file, "cli-fw", "5.1", targets)
    assert response.status_code == 409, response.text
    assert "is not newer than the hub's" in response.json()["detail"]


def test_metadata_is_public_and_only_metadata_names_are_served(cli: SigningCli) -> None:
    with httpx.Client(base_url=f"{cli.hub.http_url}/tuf", timeout=30) as tuf:
        assert tuf.get("/1.root.json").json()["signed"]["_type"] == "root"
        assert tuf.get("/1.root.json").content == (cli.keys / "root.json").read_bytes()
        assert tuf.get("/../admin.token").status_code == 404
        assert tuf.get("/snapshot.pem").status_code == 404
    with httpx.Client(base_url=f"{cli.hub.http_url}/api/v1", timeout=30) as anonymous:
        assert anonymous.get("/signing/targets").status_code == 401


def test_hub_signs_targets_mode_signs_plain_uploads(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keydir(keys, datetime.now(UTC))
    (keys / "online" / "targets.pem").write_bytes((keys / "targets.pem").read_bytes())
    hub = HubProcess(
        data_dir=tmp_path / "data",
        extra_args=["--no-auth", "--signing-keys", str(keys / "online"), "--hub-signs-targets"],
    ).start()
    try:
        data = os.urandom(5000)
        with httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30) as client:
            r = client.post("/firmware", params={"title": "hub-fw", "version": "1"}, content=data)
            assert r.status_code == 201, r.text
        target = served_targets(hub)["hub-fw/1"]
        assert target["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert json.loads(json.dumps(target["custom"])) == {"kind": "firmware"}
    finally:
        hub.stop()


def served_timestamp(hub: HubProcess) -> dict[str, Any]:
    with httpx.Client(base_url=f"{hub.http_url}/tuf", timeout=30) as tuf:
        timestamp: dict[str, Any] = tuf.get("/timestamp.json").json()
        return timestamp


def test_hub_re_signs_the_timestamp_before_it_expires(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keydir(keys, datetime.now(UTC))
    hub = HubProcess(
        data_dir=tmp_path / "data",
        extra_args=[
            "--no-auth", "--signing-keys", str(keys / "online"), "--timestamp-lifetime", "2",
        ],
    ).start()  # fmt: skip
    try:
        first = served_timestamp(hub)["signed"]
        deadline = time.monotonic() + 30
        while (latest := served_timestamp(hub)["signed"])["version"] <= first["version"] + 1:
            assert time.monotonic() < deadline, latest
            time.sleep(0.1)
        assert latest["expires"] > first["expires"]
        # re-signing the timestamp alone leaves the snapshot as it was
        assert latest["meta"] == first["meta"]
    finally:
        hub.stop()


def test_revoked_timestamp_key_is_replaced_when_the_hub_restarts_with_the_new_keys(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    init_keydir(keys, datetime.now(UTC))
    old = signer(keys, "timestamp").public_key.keyid
    hub = HubProcess(
        data_dir=tmp_path / "data", extra_args=["--no-auth", "--signing-keys", str(keys / "online")]
    ).start()
    cli = SigningCli(hub, tmp_path)
    try:
        assert served_timestamp(hub)["signatures"][0]["keyid"] == old
        hub.stop()
        # a stolen copy of the old online directory no longer starts a hub that signs
        stale = tmp_path / "stale-online"
        shutil.copytree(keys / "online", stale)
        out = cli.ok("keys", "rotate", str(keys), "--role", "timestamp", server=False)
        assert "copy" in out and "online" in out
        new = signer(keys, "timestamp").public_key.keyid
        hub.extra_args = ["--no-auth", "--signing-keys", str(keys / "online")]
        hub.start()
        assert served_timestamp(hub)["signatures"][0]["keyid"] == new
        with httpx.Client(base_url=f"{hub.http_url}/tuf", timeout=30) as tuf:
            root = tuf.get("/2.root.json").json()["signed"]
        assert root["roles"]["timestamp"]["keyids"] == [new]
        hub.stop()
        hub.extra_args = ["--no-auth", "--signing-keys", str(stale)]
        with pytest.raises(RuntimeError, match="timestamp key given to the hub is not"):
            hub.start()
    finally:
        hub.stop()


def test_root_rotations_the_hub_could_not_serve_are_refused(cli: SigningCli) -> None:
    """A root not signed by the current root key, one that names another targets key
    without re-signed targets, and one naming online keys the hub lacks: all 422."""
    other = cli.cwd / "rotation-keys"
    shutil.copytree(cli.keys, other)
    foreign = cli.cwd / "foreign-keys"
    init_keydir(foreign, datetime.now(UTC))
    rotated_foreign, _ = rotate(foreign, "targets", datetime.now(UTC))
    rotated_targets, _ = rotate(other, "targets", datetime.now(UTC))
    shutil.rmtree(other)
    shutil.copytree(cli.keys, other)
    rotated_timestamp, _ = rotate(other, "timestamp", datetime.now(UTC))
    cases = [
        (rotated_foreign, "not signed by the root's root key"),
        (rotated_targets, "send the current targets metadata signed by it along"),
        (rotated_timestamp, "timestamp key given to the hub is not"),
    ]
    for root, reason in cases:
        with cli.api() as client:
            r = client.post("/signing/root", json={"root": json.loads(to_bytes(root))})
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"]
    with httpx.Client(base_url=f"{cli.hub.http_url}/tuf", timeout=30) as tuf:
        assert tuf.get("/2.root.json").status_code == 404
    assert signed_ok(cli)


def signed_ok(cli: SigningCli) -> bool:
    """The hub still accepts packages signed with the publisher's unrotated keys."""
    upload_signed(cli, image(cli, "after-refusals.bin"), "cli-fw", "9.0")
    return "cli-fw/9.0" in served_targets(cli.hub)


def test_renew_pushes_root_and_targets_expiry_ahead_on_the_hub(cli: SigningCli) -> None:
    with httpx.Client(base_url=f"{cli.hub.http_url}/tuf", timeout=30) as tuf:
        before = tuf.get("/1.root.json").json()["signed"]
    targets_before = current_targets(cli).signed
    out = cli.ok("keys", "renew", str(cli.keys))
    assert "the hub serves root version 2" in out
    with httpx.Client(base_url=f"{cli.hub.http_url}/tuf", timeout=30) as tuf:
        after = tuf.get("/2.root.json").json()["signed"]
    a_year = (datetime.now(UTC) + timedelta(days=364)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert after["expires"] > a_year
    assert after["roles"] == before["roles"]  # same keys
    targets_after = current_targets(cli).signed
    assert targets_after.version == targets_before.version + 1
    assert targets_after.expires > datetime.now(UTC) + timedelta(days=364)
    assert targets_after.targets == targets_before.targets
    assert signed_ok_after_renewal(cli)


def signed_ok_after_renewal(cli: SigningCli) -> bool:
    upload_signed(cli, image(cli, "after-renewal.bin"), "cli-fw", "10.0")
    return "cli-fw/10.0" in served_targets(cli.hub)
