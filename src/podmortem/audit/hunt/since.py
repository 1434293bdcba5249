"""``--since``: an RFC 3339 time or a duration back from now (``90m``, ``24h``, ``7d``).

A relative value stays relative in languages that have "now" (KQL ``ago()``, BigQuery
``CURRENT_TIMESTAMP()``); the Cloud Logging filter and the Logs Insights time range take
absolute times, computed from the clock passed in (injected so tests are reproducible).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from podmortem.errors import InputError

_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SECONDS = 10 * 366 * 86400  # ten years back is already far beyond any log retention


@dataclass(frozen=True, slots=True)
class Since:
    start: datetime  # absolute, UTC
    seconds: int | None = None  # set when given as a duration

    @property
    def rfc3339(self) -> str:
        return self.start.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def epoch(self) -> int:
        return int(self.start.timestamp())


def parse_since(text: str, now: datetime) -> Since:
    value = text.strip()
    m = _DURATION.fullmatch(value)
    if m:
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        if seconds > _MAX_SECONDS:
            raise InputError(f"--since {value}: more than ten years back")
        start = now.astimezone(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
        return Since(start, seconds)
    try:
        # RFC 3339 requires an offset; "Z" is accepted by fromisoformat since Python 3.11.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise InputError(
            f"--since {value[:60]!r}: give an RFC 3339 time with offset"
            " (2026-11-20T10:00:00Z) or a duration (90m, 24h, 7d)"
        )
    return Since(parsed.astimezone(UTC).replace(microsecond=0))
