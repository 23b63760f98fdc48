"""The agent's signature check (``SignedTargets``) against metadata over real HTTP.

The repository is built with the hub's own ``Repository`` and served by the
test file server, so each case controls exactly what the agent is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otahub.agent.config import DownloadConfig, SigningConfig
from otahub.agent.signed import SignedTargets
from otahub.agent.state import PackageKind, UpdateRecord
from otahub.signing.keydir import init_keydir, load_online, signer
from otahub.signing.metadata import sign, target_for_file, to_bytes, with_target
from otahub.signing.repository import Repository
from tests.agent.fileserver import FileServer


@pytest.fixture
def served(tmp_path: Path, files: FileServer) -> tuple[Path, Path]:
    """A key directory and an image signed as ``fw/1.0`` (firmware), served under /tuf/."""
    keys = tmp_path / "keys"
    init_keydir(keys, datetime.now(UTC))
    online = load_online(keys / "online")
    repo = Repository.open(
        tmp_path / "repo", online.keys, roots=online.roots, initial_targets=online.initial_targets
    )
    image = tmp_path / "image.bin"
    image.write_bytes(b"firmware bytes" * 100)
    md = with_target(repo.targets, target_for_file("fw/1.0", image), datetime.now(UTC))
    repo.publish_targets(to_bytes(sign(md, signer(keys, "targets"))))
    for path in repo.dir.iterdir():
        files.files[f"tuf/{path.name}"] = path.read_bytes()
    return keys, image


def checker(keys: Path, repository: str, state: Path) -> SignedTargets:
    config = SigningConfig(root=keys / "root.json", repository=repository)
    return SignedTargets(config, DownloadConfig(), state)


async def test_matching_image_passes(
    served: tuple[Path, Path], files: FileServer, tmp_path: Path
) -> None:
    keys, image = served
    check = checker(keys, files.url("tuf/"), tmp_path / "state")
    result = await check.verify(UpdateRecord(key="k", name="fw", version="1.0"), image)
    assert result.ok, result.reason
    # what the agent trusts now is kept in its state dir
    assert (tmp_path / "state" / "tuf" / "timestamp.json").exists()


async def test_image_signed_as_firmware_is_refused_as_software(
    served: tuple[Path, Path], files: FileServer, tmp_path: Path
) -> None:
    keys, image = served
    check = checker(keys, files.url("tuf/"), tmp_path / "state")
    record = UpdateRecord(key="k", name="fw", version="1.0", kind=PackageKind.SOFTWARE)
    result = await check.verify(record, image)
    assert not result.ok
    assert result.reason == "signature check failed: fw/1.0 is signed as firmware, not software"


async def test_unreachable_repository_fails_the_check_with_the_reason(
    served: tuple[Path, Path], files: FileServer, tmp_path: Path
) -> None:
    keys, image = served
    check = checker(keys, files.url("elsewhere/"), tmp_path / "state")
    result = await check.verify(UpdateRecord(key="k", name="fw", version="1.0"), image)
    assert not result.ok
    assert result.reason is not None
    assert result.reason.startswith("signature check failed: the signed metadata could not be")


async def test_a_root_that_is_not_metadata_fails_the_check(
    served: tuple[Path, Path], files: FileServer, tmp_path: Path
) -> None:
    keys, image = served
    (keys / "root.json").write_text("not json")
    check = checker(keys, files.url("tuf/"), tmp_path / "state")
    result = await check.verify(UpdateRecord(key="k", name="fw", version="1.0"), image)
    assert not result.ok
    assert result.reason is not None
    assert "the trusted root" in result.reason


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "hash"),
        (lambda data: data + b"!", "length"),
    ],
    ids=["same-length-other-bytes", "longer"],
)
async def test_image_that_differs_from_the_signed_target_is_refused(
    served: tuple[Path, Path],
    files: FileServer,
    tmp_path: Path,
    tamper: Callable[[bytes], bytes],
    detail: str,
) -> None:
    keys, image = served
    image.write_bytes(tamper(image.read_bytes()))
    check = checker(keys, files.url("tuf/"), tmp_path / "state")
    result = await check.verify(UpdateRecord(key="k", name="fw", version="1.0"), image)
    assert not result.ok
    assert result.reason is not None
    assert result.reason.startswith(
        "signature check failed: the image does not match the signed target fw/1.0"
    )
    assert detail in result.reason.lower()
