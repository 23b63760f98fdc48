"""Agent configuration: the example file loads, and the environment overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from otahub.agent.config import Dialect, EnosMode, load_config

EXAMPLE = Path(__file__).parents[2] / "packaging" / "agent.example.toml"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.dialect is Dialect.THIN_EDGE
    assert config.thin_edge.device_id == "child03"
    assert config.hooks.reboot_exit_code == 100


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTAHUB_AGENT_DIALECT", "enos")
    monkeypatch.setenv("OTAHUB_AGENT_MQTT__PORT", "11883")
    monkeypatch.setenv("OTAHUB_AGENT_ENOS__PRODUCT_KEY", "pk")
    monkeypatch.setenv("OTAHUB_AGENT_ENOS__DEVICE_KEY", "dk")
    monkeypatch.setenv("OTAHUB_AGENT_ENOS__DEVICE_SECRET", "secret")
    monkeypatch.setenv("OTAHUB_AGENT_ENOS__MODE", "request")
    config = load_config(EXAMPLE)
    assert config.dialect is Dialect.ENOS
    assert config.mqtt.port == 11883
    assert config.enos.mode is EnosMode.REQUEST


def test_missing_identity_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('dialect = "thingsboard"\n[hooks]\ninstall = "true"\n')
    with pytest.raises(ValueError, match=r"thingsboard\.token"):
        load_config(path)


def test_enos_http_broker_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(EXAMPLE).enos.http_broker is None
    monkeypatch.setenv("OTAHUB_AGENT_ENOS__HTTP_BROKER", "https://broker.example:8443/")
    assert load_config(EXAMPLE).enos.http_broker == "https://broker.example:8443"
    monkeypatch.setenv("OTAHUB_AGENT_ENOS__HTTP_BROKER", "broker.example:8443")
    with pytest.raises(ValueError, match="must be an http"):
        load_config(EXAMPLE)


def test_signing_needs_root_and_repository_together(tmp_path: Path) -> None:
    assert not load_config(EXAMPLE).signing.enabled
    base = EXAMPLE.read_text()
    path = tmp_path / "a.toml"
    path.write_text(base + '\n[signing]\nroot = "/etc/otahub/root.json"\n')
    with pytest.raises(ValueError, match="both root and repository"):
        load_config(path)
    path.write_text(
        base + '\n[signing]\nroot = "/etc/otahub/root.json"\nrepository = "http://hub:8000/tuf"\n'
    )
    signing = load_config(path).signing
    assert signing.enabled
    assert signing.repository == "http://hub:8000/tuf/"
    path.write_text(base + '\n[signing]\nroot = "/r.json"\nrepository = "hub:8000/tuf/"\n')
    with pytest.raises(ValueError, match="must be an http"):
        load_config(path)
