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
        self._out = self.path.open("wb", buffering=1 << 20)
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
        meta = {
            "provider": provider,
            "envelope": envelope,
            "cluster": cluster if isinstance(cluster, str) else None,
            "log": None,  # taken from raw when loaded (mapping.staged_source)
            "line": line,
            "truncated": truncated,
            "exec_command": list(exec_command) if exec_command is not None else None,
        }
        # Optimistic: the event is written as read. DuckDB's typed reader refuses a batch in
        # which some field has the wrong type; only then is the batch checked field by field
        # (:meth:`_repair`), so well-formed evidence pays nothing for hostile evidence.
        try:
            blob = orjson.dumps({"e": event, "m": meta, "r": raw, "l": location})
        except (TypeError, orjson.JSONEncodeError):
            # e.g. an integer beyond 64 bits inside a request body, or a lone surrogate
            blob = orjson.dumps(
                {"e": _printable(event), "m": meta, "r": _printable(raw), "l": location}
            )
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
        try:
            self._insert(self.path)
        except mapping.DUCKDB_ERRORS:
            self._repair()
        self.loaded += self._pending
        self._pending = 0
        self._out = self.path.open("wb", buffering=1 << 20)

    def _insert(self, path: Path, *, lenient: bool = False) -> None:
        self.con.execute(
            mapping.insert_sql(self.table, mapping.staged_source(lenient=lenient)),
            {"file": self.file_name, "path": str(path)},
        )

    def _repair(self) -> None:
        """DuckDB's typed reader refused the batch: some field has a type the Event does not
        allow. Load it the lenient way, exactly as the columnar routes do (``json_transform``:
        a scalar is cast, a value that cannot be becomes NULL; the original stays in
        ``raw``), and report each such field."""
        with self.path.open("rb") as src:
            for line in src:
                rec = orjson.loads(line)
                event = rec.get("e")
                misfits = conform(event)[1] if isinstance(event, dict) else ["*"]
                if misfits:
                    self.tally.caveat(
                        "field-type",
                        "fields of an unexpected type (cast or left NULL; the original is in "
                        "raw): " + ", ".join(misfits),
                        self.file_name,
                        tuple(str(x) for x in rec.get("l") or ()),
                        fields=misfits,
                    )
        try:
            self._insert(self.path, lenient=True)
        except mapping.DUCKDB_ERRORS:
            self._one_by_one(self.path)

    def _one_by_one(self, batch: Path) -> None:
        """Last resort, never expected: DuckDB refused the whole batch even leniently (a
        record it cannot load, or the batch exceeds its memory limit). Load it in halves,
        halving again only the parts that are refused, so one bad record costs a few dozen
        loads instead of one per record, and a memory limit is met by smaller parts; a
        single record still refused is reported."""
        offsets = [0]
        with batch.open("rb") as src:
            for line in src:
                offsets.append(offsets[-1] + len(line))
        part = batch.with_suffix(".part")
        try:
            with batch.open("rb") as src:
                # a stack of (first, end) line ranges, in file order
                todo = [(0, len(offsets) - 1)]
                while todo:
                    first, end = todo.pop()
                    if first >= end:
                        continue
                    src.seek(offsets[first])
                    with part.open("wb") as out:
                        left = offsets[end] - offsets[first]
                        while left:
                            block = src.read(min(left, 1 << 20))
                            if not block:
                                break
                            out.write(block)
                            left -= len(block)
                    try:
                        self._insert(part, lenient=True)
                    except mapping.DUCKDB_ERRORS as exc:
                        if end - first > 1:
                            mid = (first + end) // 2
                            todo.extend(((mid, end), (first, mid)))
                            continue
                        src.seek(offsets[first])
                        rec = orjson.loads(src.read(offsets[end] - offsets[first]))
                        self.tally.caveat(
                            "unloadable",
                            f"record could not be loaded: {str(exc).splitlines()[0][:160]}",
                            self.file_name,
                            tuple(str(x) for x in rec.get("l") or ()),
                        )
        finally:
            part.unlink(missing_ok=True)

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
