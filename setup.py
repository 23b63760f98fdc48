"""Compiles the MQTT endpoint (``otahub.mqtt``) with mypyc when otahub is built.

The endpoint handles every device message, and the compiled modules do the
same work in fewer instructions (docs/benchmarks.md). The sources stay plain,
type-checked Python, so the build never fails for want of a compiler: without
a C compiler or the Python headers, or when mypyc or the C compiler fails, it
prints one warning and installs the same package uncompiled (the behaviour is
the same, the endpoint slower; ``otahub.mqtt.compiled()`` and the hub's
start-up log say which). ``OTAHUB_PURE_PYTHON=1`` skips compiling on purpose.
"""

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

PACKAGE = Path("src/otahub/mqtt")
#: Commands that build the extension; the others (sdist, metadata) need no compiling.
BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}
#: Commands that build in the source tree (an editable install).
IN_PLACE_COMMANDS = {"editable_wheel", "develop"}
HINT = "install a C compiler and the Python headers (Debian: gcc python3-dev) to compile it"


def warn_uncompiled(why: str) -> None:
    """The one warning a build that falls back to plain Python gives."""
    print(
        f"WARNING: otahub.mqtt is installed as plain Python, not compiled: {why}; {HINT}",
        file=sys.stderr,
        flush=True,
    )


def missing_toolchain() -> str | None:
    """Why no C extension can be built here, or None when it looks possible."""
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not compiler or shutil.which(compiler[0]) is None:
        return f"no C compiler ({compiler[0] if compiler else 'cc'} not found)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers} not found)"
    return None


class OptionalBuildExt(build_ext):
    """``build_ext`` whose failure leaves the plain Python sources in place."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler's or linker's failure, however reported
            first_line = (str(exc).splitlines() or [""])[0]
            warn_uncompiled(f"compiling failed ({type(exc).__name__}: {first_line[:200]})")
            # Keep no half of the compiled package: a module that built would
            # import the shared library that did not.
            for built in Path(self.build_lib).glob("**/*.so"):
                built.unlink()
            remove_inplace_builds()
            self.extensions = []


def remove_inplace_builds() -> None:
    """An editable install compiles in place: what an earlier build left there
    would still be imported instead of the sources."""
    if not IN_PLACE_COMMANDS & set(sys.argv[1:]):
        return  # a wheel built elsewhere leaves the tree's own build alone
    for built in [*PACKAGE.glob("*.so"), *PACKAGE.parent.parent.glob("*__mypyc*.so")]:
        built.unlink()


def compiled_modules() -> list:  # type: ignore[type-arg]
    if not BUILD_COMMANDS & set(sys.argv[1:]):
        return []
    if os.environ.get("OTAHUB_PURE_PYTHON", "") not in ("", "0"):
        remove_inplace_builds()
        return []
    if (missing := missing_toolchain()) is not None:
        warn_uncompiled(missing)
        remove_inplace_builds()
        return []
    from mypyc.build import mypycify

    sources = sorted(str(path) for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    try:
        return mypycify(sources, opt_level="3", debug_level="0")
    except SystemExit as exc:  # mypyc exits when type checking reports an error
        warn_uncompiled(f"mypyc stopped ({exc.code})")
        remove_inplace_builds()
        return []


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": OptionalBuildExt})
