"""How records are laid out in a stream: lines, a stream of JSON values (one document, a
top-level array, or objects concatenated with no delimiter as Firehose writes them), YAML
documents, CSV rows. Each iterator is bounded: a line, value or document larger than its
limit is reported and skipped, never held whole in memory.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import yaml

MAX_LINE = 64 << 20  # one audit event is at most a few MiB (the apiserver's 3 MiB bodies)
MAX_DOCUMENT = 1 << 30  # a single JSON document, e.g. an exported {"records": [...]} blob
MAX_YAML = 64 << 20
CHUNK = 4 << 20
_WS = " \t\r\n\ufeff"


def read_some(stream: IO[bytes], size: int = 0) -> bytes:
    """Up to ``size`` bytes with one read of the layer below (``read1``), so that a stream
    damaged further on still hands out what precedes the damage."""
    size = size or CHUNK
    read1 = getattr(stream, "read1", None)
    if read1 is not None:
        data: bytes = read1(size)
        return data
    return stream.read(size)


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line. ``record`` counts non-blank lines (DuckDB's own numbering, so the
    fast and the Python paths agree); ``physical`` is what an editor shows."""

    physical: int
    record: int
    data: bytes | None  # None: longer than MAX_LINE, skipped


def iter_lines(stream: IO[bytes], max_line: int = MAX_LINE) -> Iterator[Line]:
    physical = 0
    record = 0
    pending: list[bytes] = []
    pending_len = 0
    overlong = False
    while True:
        # read1: a corrupt compressed stream fails on a later call, after the good part
        # has been handed out, so records before the damage are still read
        chunk = read_some(stream)
        if not chunk:
            break
        parts = chunk.split(b"\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                # no newline yet: keep for the next chunk, unless it is already too long
                if overlong:
                    continue
                pending_len += len(part)
                if pending_len > max_line:
                    overlong = True
                    pending = []
                else:
                    pending.append(part)
                continue
            physical += 1
            if overlong:
                data: bytes | None = None
            elif pending:
                pending.append(part)
                data = b"".join(pending)
                if len(data) > max_line:
                    data = None
            else:
                data = part if len(part) <= max_line else None
            pending = []
            pending_len = 0
            overlong = False
            if data is not None and not data.strip():
                continue
            record += 1
            yield Line(physical, record, data)
    if overlong or pending:
        data = None if overlong else b"".join(pending)
        if data is None or data.strip():
            physical += 1
            record += 1
            yield Line(physical, record, data)


@dataclass(frozen=True, slots=True)
class Value:
    """One JSON value from a value stream: ``index`` counts values (1-based), ``offset`` is
    the character offset of its start; ``error`` is set when the stream broke there."""

    index: int
    offset: int
    value: Any = None
    error: str | None = None
    in_array: bool = False


class _Reader:
    def __init__(self, stream: IO[bytes], max_value: int) -> None:
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.buf = ""
        self.pos = 0
        self.base = 0  # character offset of buf[0] in the whole stream
        self.eof = False
        self.max_value = max_value

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = read_some(self.stream)
        if not chunk:
            self.eof = True
            self.buf = self.buf[self.pos :] + self.decoder.decode(b"", final=True)
        else:
            self.buf = self.buf[self.pos :] + self.decoder.decode(chunk)
        self.base += self.pos
        self.pos = 0
        return True

    def skip_ws(self) -> str | None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return None


def iter_values(stream: IO[bytes], max_value: int = MAX_DOCUMENT) -> Iterator[Value]:
    """JSON values one after another. A top-level array is streamed element by element
    (``gcloud logging read --format=json`` output can be large); objects written back to
    back with no delimiter (Firehose) are split with ``raw_decode``."""
    r = _Reader(stream, max_value)
    decoder = json.JSONDecoder()
    index = 0
    in_array = False
    first = r.skip_ws()
    if first == "[":
        in_array = True
        r.pos += 1
    while True:
        c = r.skip_ws()
        if c is None:
            if in_array:
                yield Value(index + 1, r.base + r.pos, error="unterminated JSON array")
            return
        if in_array:
            if c == "]":
                r.pos += 1
                in_array = False
                if index == 0:
                    # an empty array is still a record to account for
                    index += 1
                    yield Value(index, r.base + r.pos - 1, value=[])
                continue
            if c == "," and index > 0:
                r.pos += 1
                continue
        start = r.base + r.pos
        while True:
            try:
                value, end = decoder.raw_decode(r.buf, r.pos)
            except json.JSONDecodeError as exc:
                # The value may simply continue in the next chunk: read on, unless the error
                # sits before the end of what is buffered (then it is malformed, and reading
                # on would only hold the rest of the file in memory).
                incomplete = exc.pos >= len(r.buf) - 1 or exc.msg.startswith("Unterminated")
                if incomplete and not r.eof and len(r.buf) - r.pos <= max_value:
                    r.fill()
                    continue
                reason = (
                    f"JSON value larger than {max_value} characters"
                    if len(r.buf) - r.pos > max_value
                    else f"malformed JSON: {exc.msg}"
                )
                yield Value(index + 1, start, error=reason, in_array=in_array)
                index += 1
                if not _resync(r, in_array):
                    return
                break
            except RecursionError:
                yield Value(index + 1, start, error="JSON nested too deeply", in_array=in_array)
                return
            index += 1
            r.pos = end
            yield Value(index, start, value=value, in_array=in_array)
            break


# Where the next value starts after a broken one: objects back to back ("}{") or on the next
# line, or the next element of an array ("}, {").
_NEXT_OBJECT = re.compile(r'\}\s*(\{\s*")')
_NEXT_ELEMENT = re.compile(r'\}\s*,\s*(\{\s*")')


def _resync(r: _Reader, in_array: bool) -> bool:
    """Skip past a malformed value to the start of the next one (bounded by the reader's
    limit); False when there is none."""
    rx = _NEXT_ELEMENT if in_array else _NEXT_OBJECT
    while True:
        m = rx.search(r.buf, r.pos + 1)
        if m:
            r.pos = m.start(1)
            return True
        if r.eof:
            return False
        # keep only a short tail: the boundary may straddle two chunks
        r.pos = max(r.pos, len(r.buf) - 64)
        r.fill()


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors/aliases (no billion laughs) and without turning timestamps
    into datetime objects: audit timestamps must stay the strings the provider wrote."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not accepted in evidence", event.start_mark
            )
        return super().compose_node(parent, index)


_NoAliasLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def iter_yaml(stream: IO[bytes], max_size: int = MAX_YAML) -> Iterator[Value]:
    data = stream.read(max_size + 1)
    if len(data) > max_size:
        yield Value(1, 0, error=f"YAML document larger than {max_size} bytes")
        return
    text = data.decode("utf-8", errors="replace")
    index = 0
    try:
        for doc in yaml.load_all(text, Loader=_NoAliasLoader):
            index += 1
            if doc is not None:
                yield Value(index, 0, value=doc)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        yield Value(index + 1, 0, error=f"malformed YAML: {str(exc).splitlines()[0][:200]}")


def iter_csv(stream: IO[bytes], max_line: int = MAX_LINE) -> Iterator[tuple[int, Any]]:
    """CSV rows as dicts keyed by the header; yields (line, row) or (line, error text)."""
    csv.field_size_limit(max_line)
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    reader = csv.DictReader(text)
    try:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, f"malformed CSV: {exc}"
                # csv cannot resynchronise inside a broken quoted field; stop this file.
                return
            yield reader.line_num, row
    finally:
        # the byte stream belongs to the caller, who closes it
        text.detach()
