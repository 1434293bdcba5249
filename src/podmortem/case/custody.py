"""The append-only, hash-chained custody log (``custody.jsonl``).

Each line is one canonical JSON object ``{"seq", "time", "action", "details", "prev"}``
where ``prev`` is the SHA-256 of the previous line's bytes (64 zeros for the first). The hash
of the last line is the chain's *head*; the manifest keeps it so that removing records from
the end is detectable, and an investigator who writes the head down can later prove that
nothing at all was rewritten (``case verify --expect-head``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(t: datetime) -> str:
    """UTC with microseconds and a ``Z``, the form every record in a case uses."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces, ASCII only (so a record never holds raw
    control characters or invalid UTF-8 taken from hostile evidence)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True, slots=True)
class CustodyRecord:
    seq: int
    time: str
    action: str
    details: Mapping[str, Any]
    prev: str

    def to_line(self) -> bytes:
        return canonical(
            {
                "seq": self.seq,
                "time": self.time,
                "action": self.action,
                "details": dict(self.details),
                "prev": self.prev,
            }
        )

    @classmethod
    def from_line(cls, line: bytes) -> CustodyRecord:
        """Parse one line; raises ``ValueError`` on anything that is not a record."""
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        seq, prev, action = obj.get("seq"), obj.get("prev"), obj.get("action")
        if not isinstance(seq, int) or not isinstance(prev, str) or not isinstance(action, str):
            raise ValueError("missing seq, prev or action")
        details = obj.get("details")
        return cls(
            seq=seq,
            time=str(obj.get("time", "")),
            action=action,
            details=details if isinstance(details, dict) else {},
            prev=prev,
        )


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One physical line of the log: its number, raw bytes, hash, and the record if valid."""

    lineno: int
    raw: bytes
    hash: str
    record: CustodyRecord | None
    error: str | None


def read_lines(data: bytes) -> list[ParsedLine]:
    out: list[ParsedLine] = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw:
            continue
        try:
            rec: CustodyRecord | None = CustodyRecord.from_line(raw)
            err = None
        except (ValueError, UnicodeDecodeError) as exc:
            rec, err = None, str(exc)
        out.append(ParsedLine(i, raw, line_hash(raw), rec, err))
    return out
