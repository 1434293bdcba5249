"""What every watch source gives the loop: chunks of complete audit records (JSON lines in
one of the formats ``audit.sources`` reads) and, for each chunk, the position to resume from
once the chunk has been fully handled.

A source never advances its durable position itself: the loop calls :meth:`Source.commit`
after the chunk's findings and actions are durable, and only then is the position written to
the state file. A restart seeks to the last committed position, so a chunk that was being
handled when the process died is read again (and de-duplicated downstream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Chunk:
    """Records read since the last chunk, and where the source stands after them."""

    data: bytes  # complete newline-terminated records
    records: int
    position: dict[str, Any]
    notes: list[dict[str, Any]] = field(default_factory=list)  # rotations, truncations, drops


class Source(Protocol):
    """A tailable origin of audit records."""

    @property
    def name(self) -> str: ...

    def seek(self, position: dict[str, Any] | None) -> None:
        """Resume from a committed position (None: start of the source, as configured)."""

    def poll(self, max_bytes: int) -> Chunk | None:
        """Return new records (at most about ``max_bytes``), or None when there are none."""

    def commit(self, position: dict[str, Any]) -> None:
        """The chunk ending at ``position`` is durable downstream."""

    def close(self) -> None: ...
