"""Streaming ``multipart/form-data`` reader: file parts pass through in chunks.

Starlette's ``request.form()`` spools every file to a temporary file first;
for multi-GiB firmware that would write each upload twice. Here the parts come
out as events while the body streams in, so the file bytes go straight into
the blob store.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from otahub.hub.services.errors import Invalid


@dataclass(slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(slots=True)
class PartData:
    data: bytes


@dataclass(slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


@dataclass(slots=True)
class _Collector:
    events: list[Event] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    field_name: bytearray = field(default_factory=bytearray)
    field_value: bytearray = field(default_factory=bytearray)

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.field_value += data[start:end]

    def on_header_end(self) -> None:
        name = self.field_name.decode("latin-1").strip().lower()
        self.headers[name] = self.field_value.decode("utf-8", "replace").strip()
        self.field_name.clear()
        self.field_value.clear()

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get("content-disposition", ""))
        if disposition != b"form-data" or b"name" not in params:
            raise Invalid("multipart part without a form-data Content-Disposition name")
        filename = params.get(b"filename")
        self.events.append(
            PartStart(
                name=params[b"name"].decode("utf-8", "replace"),
                filename=None if filename is None else filename.decode("utf-8", "replace"),
                content_type=self.headers.get("content-type"),
            )
        )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(PartData(bytes(data[start:end])))

    def on_part_end(self) -> None:
        self.events.append(PartEnd())


def boundary_of(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise Invalid("expected multipart/form-data with a boundary")
    return params[b"boundary"]


async def parts(body: AsyncIterable[bytes], content_type: str) -> AsyncIterator[Event]:
    """The events of a multipart body, as it arrives."""
    collector = _Collector()
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
    }
    parser = MultipartParser(boundary_of(content_type), callbacks)  # type: ignore[arg-type]
    async for chunk in body:
        try:
            parser.write(chunk)
        except Invalid:
            raise
        except Exception as exc:
            raise Invalid(f"malformed multipart body: {exc}") from None
        for event in collector.events:
            yield event
        collector.events.clear()
    try:
        parser.finalize()
    except Exception as exc:
        raise Invalid(f"malformed multipart body: {exc}") from None
    for event in collector.events:
        yield event
