"""Filter expressions over devices: parsing, matching and the canonical form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from otahub.hub.services.device_filter import DeviceFilter
from otahub.hub.services.errors import Invalid
from otahub.hub.services.views import DeviceView


def device(name: str = "sensor-7", **fields: Any) -> DeviceView:
    values: dict[str, Any] = {
        "id": 1,
        "name": name,
        "dialect": "thingsboard",
        "device_type": None,
        "tb_token": None,
        "enos_product_key": None,
        "enos_device_key": None,
        "enos_device_secret": None,
        "current_fw_title": None,
        "current_fw_version": None,
        "current_sw_title": None,
        "current_sw_version": None,
        "last_seen_at": None,
        "online": False,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(fields)
    return DeviceView(**values)


BERLIN = device(
    "sensor-7",
    dialect="thingsboard",
    device_type="CIM-168",
    current_fw_version="1.2",
    current_sw_version="7.0",
    online=True,
    labels={"site": "berlin", "ring": "canary"},
)
PARIS = device("gw-1", dialect="enos", labels={"site": "paris"})
BARE = device("tedge-child", dialect="thin-edge")


def selected(expr: str) -> list[str]:
    f = DeviceFilter.parse(expr)
    return [d.name for d in (BERLIN, PARIS, BARE) if f.matches(d)]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("", ["sensor-7", "gw-1", "tedge-child"]),
        ("  ", ["sensor-7", "gw-1", "tedge-child"]),
        ("site=berlin", ["sensor-7"]),
        ("site!=berlin", ["gw-1", "tedge-child"]),  # no label counts as different
        ("site", ["sensor-7", "gw-1"]),
        ("ring", ["sensor-7"]),
        ("dialect=enos", ["gw-1"]),
        ("dialect!=enos", ["sensor-7", "tedge-child"]),
        ("device_type=CIM-168", ["sensor-7"]),
        ("device_type!=CIM-168", ["gw-1", "tedge-child"]),
        ("version=1.2", ["sensor-7"]),
        ("version!=1.2", ["gw-1", "tedge-child"]),
        ("sw_version=7.0", ["sensor-7"]),
        ("version=7.0", []),  # firmware and software versions are distinct
        ("name=sensor-*", ["sensor-7"]),
        ("name=*-?", ["sensor-7", "gw-1"]),
        ("name=[gt]*", ["gw-1", "tedge-child"]),
        ("name!=sensor-*", ["gw-1", "tedge-child"]),
        ("name=SENSOR-*", []),  # names are case-sensitive
        ("online=true", ["sensor-7"]),
        ("online=FALSE", ["gw-1", "tedge-child"]),
        ("online!=true", ["gw-1", "tedge-child"]),
        ("site=berlin,dialect=thingsboard", ["sensor-7"]),
        ("site=berlin,dialect=enos", []),
        (" site = berlin , ring ", ["sensor-7"]),
        ("site,site!=paris", ["sensor-7"]),
    ],
)
def test_filter_selects(expr: str, names: list[str]) -> None:
    assert selected(expr) == names


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("online=maybe", "'online=maybe': online is true or false"),
        ("dialect=mqtt", "'dialect=mqtt': dialect is one of"),
        ("site=", "'site=': 'site' has an empty value"),
        ("=berlin", "'=berlin': a label key is empty"),
        ("si te=x", "'si te=x'"),
        ("site=berlin,dialect", "'dialect': dialect needs a value"),
        ("online", "'online': online needs a value"),
        ("site=a;b", "'site=a;b'"),
        ("x" * 64 + "=1", "longer than 63"),
        ("site=" + "v" * 256, "longer than 255"),
        ("a!b=1", "'a!b=1'"),
    ],
)
def test_bad_terms_are_refused_naming_the_term(expr: str, message: str) -> None:
    with pytest.raises(Invalid, match=message.replace("(", r"\(")) as caught:
        DeviceFilter.parse(expr)
    assert caught.value.detail.startswith("filter")


def test_canonical_form_is_sorted_without_duplicates_and_parses_to_the_same_filter() -> None:
    f = DeviceFilter.parse(" site=berlin, dialect=thingsboard ,online=TRUE,site=berlin,,ring")
    assert str(f) == "dialect=thingsboard,online=true,ring,site=berlin"
    assert DeviceFilter.parse(str(f)) == f
    assert str(DeviceFilter.parse("")) == ""
    assert DeviceFilter.parse("").everything
    assert not f.everything


def test_a_value_may_hold_equals_signs() -> None:
    f = DeviceFilter.parse("note=a=b")
    assert f.matches(device(labels={"note": "a=b"}))
    assert not f.matches(device(labels={"note": "a"}))
    assert str(f) == "note=a=b"
