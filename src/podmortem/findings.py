"""The shared vocabulary every capability speaks: Finding, Caveat, Provenance, Severity.

Data flows one way: a source produces records with a :class:`Provenance`, an engine turns
them into :class:`Finding` objects, and anything the evidence cannot tell us becomes a
:class:`Caveat` so that an absence of findings is never misread as an absence of activity.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Severity(enum.IntEnum):
    """Ordered severities; the names match Sigma's ``level`` values."""

    INFORMATIONAL = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str) -> Severity:
        """Parse a Sigma level or a severity name (``informational``..``critical``)."""
        key = value.strip().lower()
        aliases = {"info": "informational"}
        key = aliases.get(key, key)
        try:
            return cls[key.upper()]
        except KeyError as exc:
            raise ValueError(f"unknown severity {value!r}") from exc

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a record came from: source kind, the parser that read it, and the exact spot.

    ``location`` is nested from the outside in, in the manner of dfVFS path specs, for
    example ``("evidence/eks.json.gz", "gzip", "line 812")``.
    """

    source: str
    parser: str
    artifact: str | None = None
    location: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "parser": self.parser,
            "artifact": self.artifact,
            "location": list(self.location),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        return cls(
            source=str(data["source"]),
            parser=str(data["parser"]),
            artifact=data.get("artifact"),
            location=tuple(str(x) for x in data.get("location", ())),
        )


@dataclass(frozen=True, slots=True)
class Caveat:
    """A known limit of the evidence: a truncated log line, an unreadable file, a process
    that exited mid-capture, a provider policy that could not have logged something."""

    kind: str
    message: str
    provenance: Provenance | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "provenance": self.provenance.to_dict() if self.provenance else None,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Caveat:
        prov = data.get("provenance")
        return cls(
            kind=str(data["kind"]),
            message=str(data["message"]),
            provenance=Provenance.from_dict(prov) if prov else None,
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """Something suspicious, with the evidence that shows it.

    ``subject`` names what the finding is about (an actor, a pod, a path in an image);
    ``evidence`` holds references a reader can follow (audit IDs, artifact paths, pids).
    """

    rule_id: str
    title: str
    severity: Severity
    techniques: tuple[str, ...] = ()
    time: datetime | None = None
    subject: str = ""
    summary: str = ""
    evidence: tuple[str, ...] = ()
    provenance: Provenance | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": str(self.severity),
            "techniques": list(self.techniques),
            "time": self.time.isoformat() if self.time else None,
            "subject": self.subject,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "provenance": self.provenance.to_dict() if self.provenance else None,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        prov = data.get("provenance")
        t = data.get("time")
        return cls(
            rule_id=str(data["rule_id"]),
            title=str(data["title"]),
            severity=Severity.parse(str(data["severity"])),
            techniques=tuple(data.get("techniques") or ()),
            time=datetime.fromisoformat(t) if t else None,
            subject=str(data.get("subject") or ""),
            summary=str(data.get("summary") or ""),
            evidence=tuple(str(x) for x in data.get("evidence") or ()),
            provenance=Provenance.from_dict(prov) if prov else None,
            extra=dict(data.get("extra") or {}),
        )
