"""otahub.mqtt runs compiled when built normally, and notices a build gone stale."""

import os
from pathlib import Path

import pytest

from otahub import mqtt
from otahub.mqtt import codec


def test_endpoint_is_compiled_unless_a_pure_build_was_asked_for() -> None:
    if os.environ.get("OTAHUB_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("built as pure Python on request")
    assert mqtt.compiled(), f"otahub.mqtt.codec runs from {codec.__file__}"


def test_a_source_newer_than_its_compiled_module_is_reported() -> None:
    if not mqtt.compiled():
        pytest.skip("nothing compiled to go stale")
    assert mqtt.stale_compiled_modules() == []
    source = Path(mqtt.__file__).with_name("wire.py")
    (built,) = source.parent.glob("wire.*.so")
    before = source.stat()
    try:
        os.utime(source, (before.st_atime, built.stat().st_mtime + 60))
        assert mqtt.stale_compiled_modules() == ["wire"]
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert mqtt.stale_compiled_modules() == []
