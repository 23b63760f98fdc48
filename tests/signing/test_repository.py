"""The hub's metadata repository, read by python-tuf's own client (ngclient).

The repository's clock is injected; ngclient reads the real one, so metadata
signed "two days ago" is expired for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api import exceptions
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from otahub.signing.keydir import init_keydir, load_online, rotate, signer
from otahub.signing.metadata import (
    MetadataError,
    parse,
    sign,
    target_for_file,
    timestamp_of,
    to_bytes,
    with_target,
)
from otahub.signing.publish import resigned_targets
from otahub.signing.repository import OnlineKeys, Repository


class DirFetcher(FetcherInterface):
    """Serves a repository directory as if it were the hub's /tuf/."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = self.dir / url.rsplit("/", 1)[-1]
        if not path.exists():
            raise exceptions.DownloadHTTPError(f"{url}: 404", 404)
        return iter([path.read_bytes()])


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    init_keydir(tmp_path / "keys", datetime.now(UTC))
    return tmp_path / "keys"


def open_repo(keydir: Path, directory: Path, clock: Clock | None = None) -> Repository:
    online = load_online(keydir / "online")
    return Repository.open(
        directory,
        online.keys,
        roots=online.roots,
        initial_targets=online.initial_targets,
        now=clock or Clock(),
    )


def publish(repo: Repository, keydir: Path, tmp_path: Path, name: str, data: bytes) -> None:
    file = tmp_path / name.replace("/", "_")
    file.write_bytes(data)
    md = with_target(repo.targets, target_for_file(name, file), datetime.now(UTC))
    repo.publish_targets(to_bytes(sign(md, signer(keydir, "targets"))))


def client(keydir: Path, repo_dir: Path, state: Path) -> Updater:
    state.mkdir(exist_ok=True)
    bootstrap = None if (state / "root.json").exists() else (keydir / "root.json").read_bytes()
    return Updater(str(state), "http://hub/tuf/", fetcher=DirFetcher(repo_dir), bootstrap=bootstrap)


def lookup(keydir: Path, repo_dir: Path, state: Path, name: str) -> object:
    updater = client(keydir, repo_dir, state)
    updater.refresh()
    return updater.get_targetinfo(name)


def test_published_target_is_found_with_its_length_and_hashes(keydir: Path, tmp_path: Path) -> None:
    repo = open_repo(keydir, tmp_path / "repo")
    publish(repo, keydir, tmp_path, "fw/1.0", b"x" * 1000)
    target = lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0")
    assert target is not None
    assert target.length == 1000  # type: ignore[attr-defined]
    assert sorted(target.hashes) == ["sha256", "sha512"]  # type: ignore[attr-defined]
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "2.snapshot.json",
        "2.targets.json",
        "timestamp.json",
    ]


def test_targets_not_signed_by_the_targets_key_are_refused(keydir: Path, tmp_path: Path) -> None:
    repo = open_repo(keydir, tmp_path / "repo")
    file = tmp_path / "evil"
    file.write_bytes(b"evil")
    md = with_target(repo.targets, target_for_file("fw/6.6", file), datetime.now(UTC))
    for wrong in ("snapshot", "timestamp", "root"):
        with pytest.raises(MetadataError, match="not signed by the root's targets key"):
            repo.publish_targets(to_bytes(sign(md, signer(keydir, wrong))))
    assert repo.target("fw/6.6") is None


def test_targets_not_newer_than_the_current_are_refused(keydir: Path, tmp_path: Path) -> None:
    repo = open_repo(keydir, tmp_path / "repo")
    publish(repo, keydir, tmp_path, "fw/1.0", b"one")
    stale = with_target(
        parse((tmp_path / "repo" / "1.targets.json").read_bytes(), Targets),
        target_for_file("fw/2.0", tmp_path / "fw_1.0"),
        datetime.now(UTC),
    )
    with pytest.raises(MetadataError, match="not newer"):
        repo.publish_targets(to_bytes(sign(stale, signer(keydir, "targets"))))


def test_expired_timestamp_is_refused_by_the_client_and_the_hub_re_signs_it(
    keydir: Path, tmp_path: Path
) -> None:
    clock = Clock()
    clock.now -= timedelta(days=2)  # everything the hub signs now expired a day ago
    repo = open_repo(keydir, tmp_path / "repo", clock)
    with pytest.raises(exceptions.ExpiredMetadataError, match="timestamp"):
        lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0")
    clock.now = datetime.now(UTC)
    assert repo.refresh()
    assert lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0") is None
    assert not repo.refresh()  # fresh: nothing to do until half its lifetime is gone


def test_timestamp_rolled_back_after_the_client_saw_a_newer_one_is_refused(
    keydir: Path, tmp_path: Path
) -> None:
    repo = open_repo(keydir, tmp_path / "repo")
    old = (tmp_path / "repo" / "timestamp.json").read_bytes()
    publish(repo, keydir, tmp_path, "fw/1.0", b"one")
    assert lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0") is not None
    (tmp_path / "repo" / "timestamp.json").write_bytes(old)
    with pytest.raises(exceptions.BadVersionNumberError):
        lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0")


def test_targets_key_rotation_new_key_signs_old_key_is_refused(
    keydir: Path, tmp_path: Path
) -> None:
    repo = open_repo(keydir, tmp_path / "repo")
    publish(repo, keydir, tmp_path, "fw/1.0", b"one")
    assert lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0") is not None
    old_key = signer(keydir, "targets")
    root, new_key = rotate(keydir, "targets", datetime.now(UTC))
    resigned = sign(resigned_targets(repo.targets, datetime.now(UTC)), new_key)
    repo.add_root(to_bytes(root))
    repo.publish_targets(to_bytes(resigned))
    publish(repo, keydir, tmp_path, "fw/2.0", b"two")
    # the client follows the chain from root 1 to root 2
    assert lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/2.0") is not None
    file = tmp_path / "three"
    file.write_bytes(b"three")
    by_old: Metadata[Targets] = with_target(
        repo.targets, target_for_file("fw/3.0", file), datetime.now(UTC)
    )
    with pytest.raises(MetadataError, match="not signed by the root's targets key"):
        repo.publish_targets(to_bytes(sign(by_old, old_key)))


def test_revoked_timestamp_key_no_longer_signs_for_the_client(keydir: Path, tmp_path: Path) -> None:
    repo = open_repo(keydir, tmp_path / "repo")
    assert lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0") is None
    revoked = signer(keydir, "timestamp")
    rotate(keydir, "timestamp", datetime.now(UTC))
    with pytest.raises(MetadataError, match="timestamp key given to the hub is not"):
        Repository.open(
            tmp_path / "repo",
            OnlineKeys(snapshot=signer(keydir, "snapshot"), timestamp=revoked),
            roots=load_online(keydir / "online").roots,
            initial_targets=None,
        )
    # the hub restarted with the new online keys re-signs with the new timestamp key
    repo = open_repo(keydir, tmp_path / "repo")
    assert repo.root.signed.version == 2
    assert lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0") is None
    # a timestamp signed by the revoked key is refused, even with a higher version
    assert repo.snapshot is not None and repo.timestamp is not None
    forged = timestamp_of(
        repo.snapshot, repo.timestamp.signed.version + 1, datetime.now(UTC), timedelta(days=1)
    )
    (tmp_path / "repo" / "timestamp.json").write_bytes(to_bytes(sign(forged, revoked)))
    with pytest.raises(exceptions.UnsignedMetadataError):
        lookup(keydir, tmp_path / "repo", tmp_path / "client", "fw/1.0")


def test_reopened_repository_keeps_its_versions(keydir: Path, tmp_path: Path) -> None:
    repo = open_repo(keydir, tmp_path / "repo")
    publish(repo, keydir, tmp_path, "fw/1.0", b"one")
    assert repo.timestamp is not None
    timestamp = repo.timestamp.signed.version
    again = open_repo(keydir, tmp_path / "repo")
    assert again.targets.signed.version == 2
    assert again.timestamp is not None and again.timestamp.signed.version == timestamp
    assert again.target("fw/1.0") is not None
