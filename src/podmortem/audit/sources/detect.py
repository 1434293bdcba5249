"""Recognise how a file is framed from its first bytes (after decompression), never from its
name: JSON lines, a JSON document or stream of values, CSV, CloudWatch export text, YAML.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import orjson

from podmortem.audit.sources.eks import looks_like_export_line
from podmortem.audit.sources.shape import is_event

SNIFF_BYTES = 256 << 10
SNIFF_LINES = 20

# CSV headers we can read: Logs Insights, AzureDiagnostics, AKSAudit(Admin).
_CSV_MARKERS = ("@message", "log_s", "AuditId")
# A YAML mapping key at column 0 that a LogEntry or an Event starts with.
_YAML_KEY = re.compile(
    rb"^(insertId|logName|protoPayload|kind|apiVersion|auditID|level|records|items|resource|"
    rb"timestamp|labels|operation|receiveTimestamp|severity)\s*:",
    re.M,
)


class Framing(enum.Enum):
    JSONL = "jsonl"
    JSON = "json"  # one document, a top-level array, or values back to back
    CSV = "csv"
    EXPORT_TEXT = "text"
    YAML = "yaml"
    EMPTY = "empty"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Sniff:
    framing: Framing
    native: bool = False  # every sniffed line is a native Event: try DuckDB's reader


def sniff(head: bytes) -> Sniff:
    text = head.lstrip(b"\xef\xbb\xbf")
    body = text.lstrip()
    if not body:
        return Sniff(Framing.EMPTY)
    whole = len(head) < SNIFF_BYTES
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    if not whole:
        lines = lines[:-1]  # the last line may continue past the sniff window
    lines = lines[:SNIFF_LINES]
    first = body[:1]
    if first == b"{":
        if not lines:
            # no line ends inside the window: one big document (or objects back to back)
            return Sniff(Framing.JSON)
        parsed = [_loads(ln) for ln in lines]
        objects = [p for p in parsed if isinstance(p, dict)]
        if objects and len(objects) * 2 >= len(parsed):
            native = len(objects) == len(parsed) and all(is_event(o) for o in objects)
            return Sniff(Framing.JSONL, native=native)
        return Sniff(Framing.JSON)
    if first == b"[":
        return Sniff(Framing.JSON)
    head_line = lines[0] if lines else b""
    if looks_like_export_line(head_line.strip()):
        return Sniff(Framing.EXPORT_TEXT)
    if b"," in head_line and any(m.encode() in head_line for m in _CSV_MARKERS):
        return Sniff(Framing.CSV)
    if _YAML_KEY.search(text[:SNIFF_BYTES]):
        return Sniff(Framing.YAML)
    return Sniff(Framing.UNKNOWN)


def _loads(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
