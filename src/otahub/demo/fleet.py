"""The demo's four devices: one per dialect, each with its agent configuration."""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIRMWARE_NAME = "demo-firmware"


@dataclass
class DemoDevice:
    name: str
    dialect: str
    # body of POST /api/v1/devices
    registration: dict[str, Any]
    # the dialect's section of the agent configuration
    agent_section: dict[str, Any]
    from_version: str = "1.0.0"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def section_name(self) -> str:
        return self.dialect.replace("-", "_")


def demo_devices() -> list[DemoDevice]:
    token = "demo-" + secrets.token_hex(8)
    secret = secrets.token_hex(16)
    return [
        DemoDevice(
            "demo-child01",
            "thin-edge",
            {"name": "demo-child01", "dialect": "thin-edge"},
            {"device_id": "demo-child01", "name": "Demo child 01", "type": "demo"},
        ),
        DemoDevice(
            "demo-child02",
            "tedge-legacy",
            {"name": "demo-child02", "dialect": "tedge-legacy"},
            {"child_id": "demo-child02"},
        ),
        DemoDevice(
            "demo-tb01",
            "thingsboard",
            {"name": "demo-tb01", "dialect": "thingsboard", "token": token},
            {"token": token, "chunk_size": 16384},
        ),
        DemoDevice(
            "demo-enos01",
            "enos",
            {
                "name": "demo-enos01",
                "dialect": "enos",
                "product_key": "demoPK",
                "device_key": "demoDK01",
                "secret": secret,
            },
            {"product_key": "demoPK", "device_key": "demoDK01", "device_secret": secret},
        ),
    ]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # a JSON string is a valid TOML basic string
    return json.dumps(str(value))


def _toml_table(name: str | None, values: dict[str, Any]) -> str:
    lines = [f"[{name}]"] if name else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def agent_config(device: DemoDevice, workdir: Path, mqtt_port: int) -> Path:
    """Write the agent's TOML configuration; returns its path."""
    home = workdir / device.name
    home.mkdir(parents=True, exist_ok=True)
    version_file = home / "version"
    version_file.write_text(device.from_version + "\n")
    hook = (
        f"{json.dumps(sys.executable)} -m otahub.demo.install_hook "
        f"{{file}} {{version}} {json.dumps(str(version_file))}"
    )
    parts = [
        _toml_table(
            None,
            {"dialect": device.dialect, "state_dir": str(home / "state"), "log_level": "INFO"},
        ),
        _toml_table("mqtt", {"host": "127.0.0.1", "port": mqtt_port, "reconnect_max": 2.0}),
        _toml_table(device.section_name, device.agent_section),
        _toml_table("version", {"file": str(version_file), "name": FIRMWARE_NAME}),
        _toml_table("hooks", {"install": hook, "timeout": 60.0}),
        _toml_table("download", {"retries": 5, "backoff_initial": 0.5, "backoff_max": 2.0}),
    ]
    path = home / "agent.toml"
    path.write_text("\n".join(parts))
    return path
