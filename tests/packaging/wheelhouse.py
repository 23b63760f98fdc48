"""An offline wheelhouse for install tests: the distributions installed in the
test virtualenv, packed back into wheels, so that ``pip install --no-index
--find-links`` resolves a package's requirements without reaching an index."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

#: Files an installer writes into a dist-info directory; a wheel has none of them.
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def requirement_closure(roots: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need, with theirs, by canonical name."""
    found: dict[str, metadata.Distribution] = {}
    pending = [(Requirement(text), "") for text in roots]
    while pending:
        req, extra = pending.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        dist = metadata.distribution(req.name)
        if name not in found:
            found[name] = dist
            pending.extend((Requirement(text), "") for text in dist.requires or [])
        for wanted in req.extras:
            pending.extend((Requirement(text), wanted) for text in dist.requires or [])
    return found


def repack(dist: metadata.Distribution, out_dir: Path) -> Path:
    """Pack an installed distribution back into a wheel in ``out_dir``."""
    files = [f for f in dist.files or [] if not _skipped(f)]
    dist_info = next(f.parent for f in dist.files or [] if f.name == "METADATA")
    # one of its tags this interpreter installs (a wheel may list several)
    supported = {str(tag) for tag in sys_tags()}
    tag = next(
        tag
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:") and (tag := line.split(":", 1)[1].strip()) in supported
    )
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = out_dir / f"{name}-{dist.version}-{tag}.whl"
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        for file in files:
            if file.parent == dist_info and file.name in _INSTALLER_FILES:
                continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            wheel.writestr(file.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{file.as_posix()},sha256={digest.decode()},{len(data)}")
        record = f"{dist_info.as_posix()}/RECORD"
        wheel.writestr(record, "\n".join([*records, f"{record},,"]) + "\n")
    return path


def _skipped(file: metadata.PackagePath) -> bool:
    # scripts outside site-packages are made anew from entry_points.txt
    return file.parts[0] == ".." or "__pycache__" in file.parts or file.suffix == ".pyc"


def build_wheelhouse(roots: Iterable[str], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    for dist in requirement_closure(roots).values():
        repack(dist, out_dir)
    return out_dir
