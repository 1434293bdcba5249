"""Small helpers shared by the audit-reader tests (a module, not a conftest, so that test
files can import it)."""

from __future__ import annotations

from typing import Any


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["audit_id"]: r for r in rows if r["audit_id"]}


def accounted(result: Any) -> int:
    """Records the load accounted for: events, duplicates dropped, skips, and caveats that
    stand for records (everything except the summary kinds)."""
    summary = {"skipped", "duplicates"}
    return (
        result.events_read
        + result.duplicates
        + sum(result.skipped.values())
        + sum(1 for c in result.caveats if c.kind not in summary)
    )
