"""The demo's install hook: "installs" an image by recording its version.

Run by the agent as ``python -m otahub.demo.install_hook FILE VERSION VERSION_FILE``;
the agent reads VERSION_FILE back as the device's running version.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: install_hook FILE VERSION VERSION_FILE", file=sys.stderr)
        return 2
    image, version, version_file = Path(argv[0]), argv[1], Path(argv[2])
    if not image.is_file():
        print(f"image {image} does not exist", file=sys.stderr)
        return 1
    tmp = version_file.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    os.replace(tmp, version_file)
    print(f"installed {image.name} ({image.stat().st_size} bytes) as version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
