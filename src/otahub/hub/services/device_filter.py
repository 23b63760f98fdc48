"""Filter expressions that select devices: ``site=berlin,dialect=thingsboard``.

Terms are joined by ``,`` and must all hold. A term is ``key=value``,
``key!=value`` or a bare ``key``:

* ``dialect``, ``device_type``: the device's own fields;
* ``version`` / ``sw_version``: the firmware / software version it reported;
* ``name``: a glob over the device name (``sensor-*``, ``gw-?``, ``[ab]*``);
* ``online``: ``true`` or ``false``;
* any other key is a label: ``site=berlin``; a bare ``site`` means the device
  has that label, whatever its value.

``!=`` holds where ``=`` does not, so ``site!=berlin`` also selects devices
without a ``site`` label, and ``version!=2.0`` devices that never reported one.
The empty expression selects every device.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from otahub.hub.services.devices import DIALECTS
from otahub.hub.services.errors import Invalid
from otahub.hub.services.labels import RESERVED_KEYS, key_problem, value_problem

MAX_EXPRESSION = 4096
_BOOLEANS = {"true": True, "false": False}


class Selectable(Protocol):
    """What a filter looks at: a :class:`~otahub.hub.services.views.DeviceView`,
    or :class:`DeviceFacts` when only these columns were loaded."""

    @property
    def name(self) -> str: ...
    @property
    def dialect(self) -> str: ...
    @property
    def device_type(self) -> str | None: ...
    @property
    def current_fw_version(self) -> str | None: ...
    @property
    def current_sw_version(self) -> str | None: ...
    @property
    def online(self) -> bool: ...
    @property
    def labels(self) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """The fields a filter needs, without credentials and driver state (cheap to load)."""

    id: int
    name: str
    dialect: str
    device_type: str | None
    current_fw_version: str | None
    current_sw_version: str | None
    online: bool
    labels: dict[str, str]


class Op(StrEnum):
    EQ = "="
    NE = "!="
    HAS = ""  # bare key: the label is present


@dataclass(frozen=True, slots=True, order=True)
class Term:
    key: str
    op: Op
    value: str = ""

    def __str__(self) -> str:
        return f"{self.key}{self.op.value}{self.value}"

    def matches(self, device: Selectable) -> bool:
        if self.op is Op.HAS:
            return self.key in device.labels
        holds = self._equals(device)
        return holds if self.op is Op.EQ else not holds

    def _equals(self, device: Selectable) -> bool:
        key, value = self.key, self.value
        if key == "name":
            return fnmatch.fnmatchcase(device.name, value)
        if key == "dialect":
            return device.dialect == value
        if key == "device_type":
            return device.device_type == value
        if key == "version":
            return device.current_fw_version == value
        if key == "sw_version":
            return device.current_sw_version == value
        if key == "online":
            return device.online is _BOOLEANS[value]
        return device.labels.get(key) == value


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """A parsed filter expression; ``str()`` gives its canonical form
    (terms sorted, duplicates and blanks dropped), which parses to an equal filter."""

    terms: tuple[Term, ...] = ()

    @classmethod
    def parse(cls, expr: str) -> DeviceFilter:
        """Parse ``expr``; :class:`Invalid` names the term that is wrong and why."""
        if len(expr) > MAX_EXPRESSION:
            raise Invalid(f"filter: longer than {MAX_EXPRESSION} characters")
        terms = {_parse_term(raw.strip()) for raw in expr.split(",") if raw.strip()}
        return cls(tuple(sorted(terms)))

    def matches(self, device: Selectable) -> bool:
        return all(term.matches(device) for term in self.terms)

    @property
    def everything(self) -> bool:
        """Whether the filter selects every device (the empty expression)."""
        return not self.terms

    def __str__(self) -> str:
        return ",".join(str(term) for term in self.terms)


def _parse_term(term: str) -> Term:
    if "!=" in term:
        key, _, value = term.partition("!=")
        op = Op.NE
    elif "=" in term:
        key, _, value = term.partition("=")
        op = Op.EQ
    else:
        key, value, op = term, "", Op.HAS
    key, value = key.strip(), value.strip()
    if (problem := key_problem(key)) is not None:
        raise Invalid(f"filter term {term!r}: {problem}")
    if op is Op.HAS:
        if key in RESERVED_KEYS:
            raise Invalid(f"filter term {term!r}: {key} needs a value ({key}=...)")
        return Term(key, op)
    if (problem := value_problem(key, value)) is not None:
        raise Invalid(f"filter term {term!r}: {problem.replace('label ', '', 1)}")
    if key == "online":
        value = value.lower()
        if value not in _BOOLEANS:
            raise Invalid(f"filter term {term!r}: online is true or false")
    elif key == "dialect" and value not in DIALECTS:
        raise Invalid(f"filter term {term!r}: dialect is one of {', '.join(DIALECTS)}")
    return Term(key, op, value)
