"""What a record reader is told about where a record sits, and what it can do with it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podmortem.audit.sources.staging import Stager
    from podmortem.audit.sources.tally import Tally

MAX_DEPTH = 6  # envelopes nest (a Pub/Sub push holds a message holds a LogEntry); no deeper


@dataclass(frozen=True, slots=True)
class Where:
    """The position of a record: ``line`` fills ``source_line`` (line number for line-based
    files, value index for JSON/YAML documents), ``location`` is the nested provenance
    (``("line 12", "records[3]")``), ``container`` the framing the record came in
    (``jsonl``, ``array``, ``json``, ``yaml``, ``csv``, ``text``)."""

    line: int
    location: tuple[str, ...]
    container: str
    depth: int = 0

    def inner(self, step: str, container: str | None = None) -> Where:
        return Where(self.line, (*self.location, step), container or self.container, self.depth + 1)


@dataclass
class Ctx:
    file: str
    stager: Stager
    tally: Tally

    def caveat(self, kind: str, message: str, where: Where, **details: Any) -> None:
        self.tally.caveat(kind, message, self.file, where.location, **details)

    def not_audit(self, reason: str, where: Where) -> None:
        """A record that is not an audit event: counted by reason (one caveat per reason and
        file, with the first location, is written at the end)."""
        self.tally.skip(reason, self.file, where.location)

    def items(
        self,
        obj: Mapping[str, Any],
        key: str,
        where: Where,
        *,
        missing: str,
        empty: str,
        not_object: str,
    ) -> Iterator[tuple[dict[str, Any], Where]]:
        """The objects of the list ``obj[key]`` (an EventList's ``items``, AKS ``records``,
        a filter-log-events page's ``events``), each with its place; the rest counted as
        skips with the reason given: no list at all, an empty one, an item that is no
        object."""
        items = obj.get(key)
        if not isinstance(items, list):
            self.not_audit(missing, where)
            return
        if not items:
            self.not_audit(empty, where)
        for i, item in enumerate(items):
            w = where.inner(f"{key}[{i}]")
            if isinstance(item, dict):
                yield item, w
            else:
                self.not_audit(not_object, w)


def text_of(value: Any, limit: int = 200) -> str:
    s = value if isinstance(value, str) else repr(value)
    return s[:limit]
