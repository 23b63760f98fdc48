"""HubSettings: every option from the command line, the environment or the
--config file, resolved once, checked whatever its source."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from otahub.cli.serve import serve
from otahub.hub.settings import (
    NOT_ON_COMMAND_LINE,
    EnosFileUrl,
    HubSettings,
    LogFormat,
    SettingsError,
    option_names,
    read_config_file,
    resolve_settings,
    validate_option,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "hub.example.toml"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_command_line_wins_over_environment_wins_over_file_wins_over_default(
    tmp_path: Path,
) -> None:
    config = _toml(
        tmp_path,
        'mqtt_port = 1001\nhttp_port = 1002\nnotify_rate = 3.0\ndata_dir = "/srv/from-file"\n',
    )
    env = {"OTAHUB_HTTP_PORT": "2002", "OTAHUB_NOTIFY_RATE": "30", "OTAHUB_HOST": "::1"}
    settings = resolve_settings({"notify_rate": 300.0}, env, config)
    assert settings.mqtt_port == 1001  # file
    assert settings.http_port == 2002  # environment over file
    assert settings.notify_rate == 300.0  # command line over both
    assert settings.host == "::1"  # environment over default
    assert settings.data_dir == Path("/srv/from-file")
    assert settings.shutdown_timeout == HubSettings().shutdown_timeout  # default


def test_unknown_key_in_the_config_file_is_an_error_naming_the_key(tmp_path: Path) -> None:
    config = _toml(tmp_path, "mqtt_port = 1883\nmqtt_prot = 1884\n")
    with pytest.raises(SettingsError, match=r"hub\.toml: unknown key 'mqtt_prot'"):
        resolve_settings({}, {}, config)


def test_a_table_in_the_config_file_is_an_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"unknown key 'tls'"):
        resolve_settings({}, {}, _toml(tmp_path, '[tls]\ncert = "x"\n'))


def test_config_file_that_is_not_toml_says_so(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"not valid TOML"):
        resolve_settings({}, {}, _toml(tmp_path, "mqtt_port = \n"))


def test_environment_values_are_parsed_to_the_option_types() -> None:
    settings = resolve_settings(
        {},
        {
            "OTAHUB_ALLOW_ANONYMOUS": "true",
            "OTAHUB_ANONYMOUS_FROM": "10.0.0.0/8, 192.168.1.7",
            "OTAHUB_ENOS_FILE_URL": "RELATIVE",
            "OTAHUB_ENOS_PUSH_GRACE": "0.25",
            "OTAHUB_MAX_INFLIGHT": "20",
            "OTAHUB_DATABASE_URL": "sqlite:////tmp/x.db",
            "OTAHUB_UPDATE_TIMEOUT": "90",
            "OTAHUB_ADMIN_TOKEN": "s3cret",
            "OTAHUB_LOG_FORMAT": "json",
            "OTAHUB_MQTT_TLS_PORT": "",  # empty: unset
        },
    )
    assert settings.allow_anonymous is True
    assert settings.anonymous_from == ("10.0.0.0/8", "192.168.1.7/32")
    assert settings.enos_file_url is EnosFileUrl.RELATIVE
    assert settings.enos_push_grace == 0.25
    assert settings.mqtt_limits.max_inflight == 20
    assert settings.database_url == "sqlite:////tmp/x.db"
    assert settings.update_timeout == 90.0
    assert settings.admin_token == "s3cret"
    assert settings.log_format is LogFormat.JSON
    assert settings.mqtt_tls_port is None


def test_every_option_has_its_environment_variable() -> None:
    # each option's default, given as text in its variable, resolves to itself
    defaults = HubSettings()
    for name in option_names():
        value = getattr(defaults, name)
        if value is None:
            continue
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        resolved = resolve_settings({}, {f"OTAHUB_{name.upper()}": text})
        assert getattr(resolved, name) == value, name


@pytest.mark.parametrize(
    ("env", "config", "message"),
    [
        ({"OTAHUB_MQTT_PORT": "abc"}, "", r"OTAHUB_MQTT_PORT: .*valid integer.*'abc'"),
        ({"OTAHUB_MQTT_PORT": "70000"}, "", r"OTAHUB_MQTT_PORT: .*65535"),
        ({}, 'mqtt_port = "x"', r"hub\.toml: mqtt_port: .*valid integer"),
        ({}, "notify_rate = 0", r"notify_rate: .*greater than or equal to 0\.01"),
        ({}, 'anonymous_from = ["10.0.0.0/8", "nonsense"]', r"anonymous_from: .*'nonsense'"),
        ({"OTAHUB_ENOS_FILE_URL": "sideways"}, "", r"OTAHUB_ENOS_FILE_URL: .*absolute"),
        (
            {"OTAHUB_ADMIN_PORT": "9000", "OTAHUB_ADMIN_HOST": "0.0.0.0"},
            "no_auth = true",
            r"--no-auth is only allowed when bound to loopback",
        ),
        ({}, 'broker = "http://x"', r"--broker: "),
    ],
)
def test_a_bad_value_is_refused_naming_where_it_came_from(
    tmp_path: Path, env: dict[str, str], config: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        resolve_settings({}, env, _toml(tmp_path, config))


def test_serve_has_one_option_per_setting_with_the_settings_default() -> None:
    parameters = inspect.signature(serve).parameters
    options = set(parameters) - {"ctx", "config"}
    assert options == set(option_names()) - NOT_ON_COMMAND_LINE
    defaults = HubSettings()
    for name in options:
        default = parameters[name].default
        shown = default if default is None else validate_option(name, default, name)
        assert shown == getattr(defaults, name), name


def test_example_config_lists_every_option_and_loads_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    commented = re.findall(r"^# ?([a-z_]+) = ", text, flags=re.MULTILINE)
    assert sorted(commented) == sorted(f.name for f in fields(HubSettings))
    uncommented = re.sub(r"^# ?([a-z_]+ = )", r"\1", text, flags=re.MULTILINE)
    keys = read_config_file(_toml(tmp_path, uncommented))
    assert sorted(keys) == sorted(option_names())
    resolve_settings({}, {}, _toml(tmp_path, uncommented))  # and every value is valid
