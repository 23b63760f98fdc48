"""``--help`` shows a flag as a flag: ``--force``, not ``--force <bool>``.

typer's rich help prints every option's type, flags included, which reads as
if ``--force`` took a value (``--force true``) when it takes none. Flags get
no type column here; every other option keeps its ``<str>``, ``<int>``, ...
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_display_type = TyperOption.display_type_rich


def _flag_without_type(self: TyperOption, ctx: Any) -> Any:  # typer's own click Context
    if self.is_flag:
        return None
    return _display_type(self, ctx)


def install() -> None:
    setattr(TyperOption, "display_type_rich", _flag_without_type)  # noqa: B010
