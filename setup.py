"""Compiles the MQTT endpoint (``otahub.mqtt``) with mypyc when otahub is built.

The endpoint handles every device message, and the compiled modules do the
same work in fewer instructions (docs/benchmarks.md). The sources stay plain,
type-checked Python: ``OTAHUB_PURE_PYTHON=1`` builds without compiling, for
platforms without a C compiler, with the same behaviour.
"""

import os
from pathlib import Path

from setuptools import setup

PACKAGE = Path("src/otahub/mqtt")


def compiled_modules() -> list:  # type: ignore[type-arg]
    if os.environ.get("OTAHUB_PURE_PYTHON", "") not in ("", "0"):
        # An editable install compiles in place: what an earlier build left
        # there would still be imported instead of the sources.
        for built in [*PACKAGE.glob("*.so"), *PACKAGE.parent.parent.glob("*__mypyc*.so")]:
            built.unlink()
        return []
    from mypyc.build import mypycify

    sources = sorted(str(path) for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    return mypycify(sources, opt_level="3", debug_level="0")


setup(ext_modules=compiled_modules())
