"""The Python route's output: native-shaped events written as NDJSON to a scratch file, then
loaded by DuckDB's JSON reader through the same mapping as the fast route.

Writing NDJSON with orjson and letting DuckDB parse it in C is several times faster than
inserting Python tuples, and keeps memory flat however large the input is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson

from podmortem.audit.sources import mapping
from podmortem.audit.sources.shape import conform
from podmortem.audit.sources.tally import Tally

FLUSH_EVERY = 250_000


class Stager:
    """Collects the events of one input file and loads them into ``table``."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, table: str, scratch: Path, tally: Tally
    ) -> None:
        self.con = con
        self.table = table
        self.path = scratch / "staged.ndjson"
        self.tally = tally
        self.file_name = ""
        self._out = self.path.open("wb")
        self._pending = 0
        self.loaded = 0

    def begin(self, file_name: str) -> None:
        self.file_name = file_name

    def event(
        self,
        event: Mapping[str, Any],
        *,
        provider: str,
        envelope: str,
        line: int,
        raw: Any,
        location: tuple[str, ...],
        cluster: str | None = None,
        truncated: bool = False,
        exec_command: Sequence[str] | None = None,
    ) -> None:
        typed, dropped = conform(event)
        if dropped:
            self.tally.caveat(
                "field-type",
                f"fields with an unexpected type were kept only in raw: {', '.join(dropped)}",
                self.file_name,
                location,
                fields=dropped,
            )
        meta = {
            "provider": provider,
            "envelope": envelope,
            "cluster": cluster if isinstance(cluster, str) else None,
            "line": line,
            "truncated": truncated,
            "exec_command": list(exec_command) if exec_command is not None else None,
        }
        try:
            blob = orjson.dumps({"e": typed, "m": meta, "r": raw})
        except (TypeError, orjson.JSONEncodeError):
            # e.g. an integer beyond 64 bits inside a request body, or a lone surrogate
            blob = orjson.dumps({"e": _printable(typed), "m": meta, "r": _printable(raw)})
        self._out.write(blob)
        self._out.write(b"\n")
        self._pending += 1
        self.tally.staged += 1
        if self._pending >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self._out.close()
        self.con.execute(
            mapping.insert_sql(self.table, mapping.staged_source()),
            [self.file_name, str(self.path)],
        )
        self.loaded += self._pending
        self._pending = 0
        self._out = self.path.open("wb")

    def close(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)


def _printable(value: Any) -> Any:
    """A JSON-safe copy of ``value``: big integers and unencodable strings become strings."""
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    return value
