"""Device labels: which keys and values are allowed.

Labels are what groups and rollouts select devices by, through filter
expressions (``site=berlin,ring!=canary``) and the CSV import's ``k=v;k=v``
column; keys and values must therefore stay unambiguous in both: no ``,`` or
``;`` anywhere, no ``=`` or ``!`` in keys, no surrounding blanks, and keys must
not shadow the device fields a filter also knows.
"""

from __future__ import annotations

from collections.abc import Mapping

from otahub.hub.services.errors import Invalid

#: Device fields a filter selects by; never label keys.
RESERVED_KEYS = ("dialect", "device_type", "version", "sw_version", "name", "online")
MAX_KEY = 63
MAX_VALUE = 255
MAX_LABELS = 64  # per device
_KEY_FORBIDDEN = frozenset(",=;!")
_VALUE_FORBIDDEN = frozenset(",;")


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a label key (reserved keys aside), or None."""
    if not key:
        return "a label key is empty"
    if len(key) > MAX_KEY:
        return f"label key {key!r} is longer than {MAX_KEY} characters"
    if not all(0x21 <= ord(c) <= 0x7E and c not in _KEY_FORBIDDEN for c in key):
        return f"label key {key!r} must be printable ASCII without spaces, ',', '=', ';' or '!'"
    return None


def value_problem(key: str, value: str) -> str | None:
    """Why ``value`` cannot be the value of label ``key``, or None."""
    if not value:
        return f"label {key!r} has an empty value"
    if len(value) > MAX_VALUE:
        return f"the value of label {key!r} is longer than {MAX_VALUE} characters"
    if not value.isprintable() or any(c in _VALUE_FORBIDDEN for c in value):
        return f"the value of label {key!r} must be printable text without ',' or ';'"
    if value != value.strip():
        return f"the value of label {key!r} starts or ends with a blank"
    return None


def check_key(key: str) -> str:
    """``key`` if it may be set as a label key; else :class:`Invalid` saying why."""
    if (problem := key_problem(key)) is not None:
        raise Invalid(problem)
    if key in RESERVED_KEYS:
        raise Invalid(
            f"label key {key!r} is reserved: filters use it for the device's own field "
            f"(reserved: {', '.join(RESERVED_KEYS)})"
        )
    return key


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``labels`` if every key and value is acceptable; else :class:`Invalid`."""
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise Invalid(f"label {key!r}: keys and values are text")
        check_key(key)
        if (problem := value_problem(key, value)) is not None:
            raise Invalid(problem)
    if len(labels) > MAX_LABELS:
        raise Invalid(f"a device has at most {MAX_LABELS} labels, not {len(labels)}")
    return dict(labels)


def parse_pairs(text: str, separator: str = ";") -> dict[str, str]:
    """``k=v;k2=v2`` (the CSV import's labels column) as a dict; checked."""
    labels: dict[str, str] = {}
    for part in text.split(separator):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise Invalid(f"label {part!r} is not key=value")
        key, value = key.strip(), value.strip()
        if key in labels:
            raise Invalid(f"label {key!r} is given twice")
        labels[key] = value
    return check_labels(labels)
