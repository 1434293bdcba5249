"""Read every input into the normalized ``audit_events`` table.

For each file: peel compression (magic bytes), sniff the framing and the record shape from
the content (:mod:`.detect`), then

- the *columnar route* when the shape is one DuckDB can read at speed (native JSONL, AKS
  blob lines and records documents, GKE entry lines and arrays, EKS subscription payloads
  and filter-log-events pages; :mod:`.columnar`, :mod:`.mapping`): DuckDB reads the file
  itself; records of any other shape in it (the residue) are deleted and re-read below;
- the *Python route* for everything else, for files DuckDB refuses, and for the residue:
  the readers of :mod:`.native`, :mod:`.eks`, :mod:`.aks`, :mod:`.gke` (dispatched by
  :mod:`.classify`) salvage, report and count, and stage native-shaped events that DuckDB
  loads through the same SQL mapping (:mod:`.staging`).

Afterwards events are deduplicated on (auditID, stage), keeping the first seen.
"""

from __future__ import annotations

import re
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import duckdb
import orjson

from podmortem.audit.model import TABLE, create_table
from podmortem.audit.sources import columnar, detect, framing, mapping
from podmortem.audit.sources.classify import dispatch
from podmortem.audit.sources.context import Ctx, Where
from podmortem.audit.sources.detect import SNIFF_BYTES, Framing, Sniff, sniff
from podmortem.audit.sources.eks import handle_export_line
from podmortem.audit.sources.inputs import InputFile, expand, open_layers
from podmortem.audit.sources.mapping import BLANK, RESIDUE, SKIP
from podmortem.audit.sources.native import salvage_and_report
from podmortem.audit.sources.staging import Stager
from podmortem.audit.sources.tally import LoadResult, Tally
from podmortem.errors import InputError
from podmortem.findings import Caveat, Provenance

# Table names are interpolated into SQL (DuckDB cannot bind identifiers): plain names only.
# Every other value is bound as a parameter.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

try:  # zstandard raises its own error type on a corrupt frame
    from zstandard import ZstdError as _ZstdError
except ImportError:  # pragma: no cover - zstandard is a dependency
    _ZstdError = OSError  # type: ignore[misc,assignment]

_READ_ERRORS = (OSError, EOFError, zlib.error, _ZstdError)


def load(
    con: duckdb.DuckDBPyConnection,
    inputs: Sequence[str | Path],
    *,
    table: str = TABLE,
    keep_raw: bool = True,
    native_fast: bool = True,
    stdin: BinaryIO | None = None,
) -> LoadResult:
    """Load audit events from files, folders (recursive) or ``-`` (standard input).

    ``keep_raw=False`` leaves ``raw`` NULL for events read by the fast native route (about
    twice as fast; the file and line still point at the original). ``native_fast=False``
    reads native JSONL through the Python route too (slower; for comparison). Raises
    :class:`~podmortem.errors.InputError` for an input path that does not exist; problems
    inside files become caveats and the other records are still read.
    """
    if not _IDENT.match(table):
        raise InputError(f"not a plain SQL table name: {table[:80]!r}")
    create_table(con, table)
    with _quiet(con):
        return _load(con, inputs, table, keep_raw=keep_raw, native_fast=native_fast, stdin=stdin)


@contextmanager
def _quiet(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB draws a progress bar on long queries; a library must not write to the
    terminal (the CLI owns it)."""
    row = con.execute("SELECT current_setting('enable_progress_bar')").fetchone()
    con.execute("SET enable_progress_bar = false")
    try:
        yield
    finally:
        con.execute("SET enable_progress_bar = ?", [bool(row[0]) if row else False])


# Rows of this load are told apart by rowid. A checkpoint of a database file may compact
# row groups that hold deleted rows and renumber rowids (their order is kept, their values
# are not), and checkpoints happen only at commits. So every step that reads rowids and
# then deletes by them runs inside one transaction, and the boundary of this load is found
# again by position (the rows before it are never deleted: they are the first ``before``).
@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.Error:
        yield  # the caller holds a transaction: no checkpoint can happen inside it
        return
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _boundary(con: duckdb.DuckDBPyConnection, table: str, rows_before: int) -> int:
    """The largest rowid among the first ``rows_before`` rows (-1 if none): rows of this
    load are those with a larger rowid. Call inside a transaction."""
    if rows_before <= 0:
        return -1
    row = con.execute(
        f'SELECT rowid FROM "{table}" ORDER BY rowid LIMIT 1 OFFSET ?',  # noqa: S608 - plain identifier, values bound
        [rows_before - 1],
    ).fetchone()
    return int(row[0]) if row else -1


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608 - plain identifier
    return int(row[0]) if row else 0


def _load(
    con: duckdb.DuckDBPyConnection,
    inputs: Sequence[str | Path],
    table: str,
    *,
    keep_raw: bool,
    native_fast: bool,
    stdin: BinaryIO | None,
) -> LoadResult:
    tally = Tally()
    rows_before = _count(con, table)
    with tempfile.TemporaryDirectory(prefix="podmortem-audit-") as tmp:
        scratch = Path(tmp)
        files, skipped = expand(inputs, scratch, stdin)
        for s in skipped:
            tally.caveat("input-skipped", f"not read: {s.reason}", s.name)
        stager = Stager(con, table, scratch, tally)
        try:
            for f in files:
                _read_file(f, con, table, stager, tally, keep_raw, native_fast)
        finally:
            stager.close()
    with _transaction(con):
        start = _boundary(con, table, rows_before)
        duplicates, dup_by_source = _deduplicate(con, table, start)
        by_source = {
            f"{p}/{e}": int(n)
            for p, e, n in con.execute(
                f'SELECT provider, envelope, count(*) FROM "{table}" WHERE rowid > ? '  # noqa: S608 - plain identifiers, values bound
                "GROUP BY ALL ORDER BY ALL",
                [start],
            ).fetchall()
        }
    if duplicates:
        tally.caveats.append(_dup_caveat(duplicates, dup_by_source))
    tally.summarise()
    return LoadResult(
        events_read=sum(by_source.values()),
        events_by_source=by_source,
        caveats=tally.caveats,
        skipped=dict(sorted(tally.skipped.items())),
        files=[f.name for f in files],
        duplicates=duplicates,
    )


def _max_rowid(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f'SELECT coalesce(max(rowid), -1) FROM "{table}"').fetchone()  # noqa: S608 - plain identifiers, values bound
    return int(row[0]) if row else -1


def read_file(
    f: InputFile,
    con: duckdb.DuckDBPyConnection,
    table: str,
    stager: Stager,
    tally: Tally,
    *,
    keep_raw: bool = True,
) -> None:
    """One file into ``table``, as :func:`load` reads each of its inputs: for a caller that
    schedules files itself (the Spark engine reads one file per task). The caller owns the
    stager (``close()`` it after the last file) and deduplicates; ``table`` must exist."""
    if not _IDENT.match(table):
        raise InputError(f"not a plain SQL table name: {table[:80]!r}")
    with _quiet(con):
        _read_file(f, con, table, stager, tally, keep_raw, True)


def _read_file(  # noqa: PLR0917 - internal, called once
    f: InputFile,
    con: duckdb.DuckDBPyConnection,
    table: str,
    stager: Stager,
    tally: Tally,
    keep_raw: bool,
    native_fast: bool,
) -> None:
    stager.begin(f.name)
    ctx = Ctx(file=f.name, stager=stager, tally=tally)
    found: list[str] = []
    head = b""
    try:
        with open_layers(f.path, found) as stream:
            while len(head) < SNIFF_BYTES:
                piece = framing.read_some(stream, SNIFF_BYTES - len(head))
                if not piece:
                    break
                head += piece
    except _READ_ERRORS as exc:
        if not head:
            tally.caveat("unreadable", f"cannot read: {_reason(exc)}", f.name)
            return
        # damaged further on: read what precedes the damage (reported when reached)
    sn = sniff(head)
    if sn.framing is Framing.EMPTY:
        tally.skip("empty file", f.name)
        return
    if sn.framing is Framing.UNKNOWN:
        tally.skip("file not recognised as an audit log", f.name)
        tally.caveat(
            "unrecognised-file",
            "content is not a known audit-log format",
            f.name,
            compression=found,
        )
        return
    sources = _columnar_sources(sn, keep_raw, found) if native_fast else []
    unit = "line" if sn.framing is Framing.JSONL else "value"
    for source, by_line in sources:
        residue = _columnar(f, con, table, source, tally=tally, unit=unit, by_line=by_line)
        if residue is not None:
            if residue.lines is not None:
                _read_lines(residue.lines, ctx)
            elif residue.units:
                _read_python(f, sn.framing, ctx, only=residue.units)
            return
    _read_python(f, sn.framing, ctx)


def _columnar_sources(sn: Sniff, keep_raw: bool, found: list[str]) -> list[tuple[str, bool]]:
    """The DuckDB relations for this file, to try in order, if a columnar route fits it;
    each with whether its rows come one per line without a number (``n`` NULL), for
    :func:`_columnar` to number by insertion order."""
    if len(found) > 1 or sn.route is None:
        return []  # DuckDB peels one compression layer
    compression = found[0] if found else "none"
    lines = sn.framing is Framing.JSONL
    if sn.route == detect.NATIVE and lines:
        # line by line first (parallel, one parse per line); the CSV reader behind it
        # refuses some files (a carriage return, invalid UTF-8, a line over FAST_LINE),
        # which the objects reader then reads. Without raw only the typed reader: when it
        # refuses a mistyped value, the Python route reports it (a lenient reader would
        # drop it unseen)
        if keep_raw:
            return [
                (mapping.native_source(keep_raw=True, compression=compression), True),
                (
                    mapping.native_source(keep_raw=True, compression=compression, by_line=False),
                    False,
                ),
            ]
        # a line over FAST_LINE: the typed reader again, with the Python route's limit
        return [
            (mapping.native_source(keep_raw=False, compression=compression, max_line=n), True)
            for n in (mapping.FAST_LINE, framing.MAX_LINE)
        ]
    if sn.route == detect.AKS_BLOB and lines:
        return [
            (columnar.aks(compression, keep_raw, records_doc=False, by_line=True), True),
            (columnar.aks(compression, keep_raw, records_doc=False), False),
        ]
    if sn.route == detect.GKE_LINES and lines:
        return [
            (columnar.gke(compression, keep_raw, layout="lines", by_line=True), True),
            (columnar.gke(compression, keep_raw, layout="lines"), False),
        ]
    envelope = _columnar_source(sn, keep_raw, compression)
    return [] if envelope is None else [(envelope, False)]


def _columnar_source(sn: Sniff, keep_raw: bool, compression: str) -> str | None:
    """The DuckDB relation for a cloud envelope read as whole documents or payloads, if
    a columnar route fits it (AKS blob lines and GKE entry lines: :func:`_columnar_sources`)."""
    lines = sn.framing is Framing.JSONL
    if sn.route == detect.AKS_RECORDS:
        return columnar.aks(compression, keep_raw, records_doc=True, lines=lines)
    if sn.route == detect.GKE_ARRAY and not lines:
        return columnar.gke(compression, keep_raw, layout="array")
    if sn.route == detect.EKS_SUBSCRIPTION:
        layout = "newline_delimited" if lines else "unstructured"
        return columnar.eks_subscription(compression, keep_raw, layout)
    if sn.route == detect.EKS_FILTER_LOG_EVENTS:
        return columnar.eks_filter_log_events(compression, keep_raw, lines=lines)
    return None


def _columnar(
    f: InputFile,
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: str,
    *,
    tally: Tally,
    unit: str,
    by_line: bool = False,
) -> _Residue | None:
    """DuckDB reads the file. Returns the units (lines, or values of a JSON file) holding
    residue rows, deleted here to be re-read whole in Python; None when DuckDB refused the
    file (then the next relation, or the Python route, reads all of it). Rows marked as
    skips are counted here, except in residue units (the Python reader will count those).

    A ``by_line`` relation gives one row per line (blank ones marked), unnumbered, with the
    line's text in ``t``: the rows are numbered here by insertion order, which DuckDB keeps
    (``preserve_insertion_order``), and the text of residue lines comes back with them, so
    that Python need not read the file again to find them (200k GKE entries with 625 exec
    calls: 0.65 s of a 2.3 s load)."""
    if by_line:
        source = (
            f"SELECT e, m, CASE WHEN m.provider = '{RESIDUE}' THEN to_json(t) ELSE r END AS r,"  # noqa: S608 - fixed SQL text
            f" f, n FROM ({source})"
        )
    with _transaction(con):
        residue = _columnar_in_transaction(
            f, con, table, source, tally=tally, unit=unit, by_line=by_line
        )
    # Rows that are no events of this route (residue, skips, blank lines) are deleted only
    # now: DuckDB moves the rows a transaction appended into the table as they are, unless
    # it also deleted some of them, and then copies them all once more at commit (AKS,
    # 200k records: a 1.0 s commit). They are told by content, not by rowid: no row of an
    # earlier file is marked so.
    if residue is not None:
        con.execute(f'DELETE FROM "{table}" WHERE starts_with(provider, ?)', ["!"])  # noqa: S608 - plain identifier, values bound
    return residue


def _columnar_in_transaction(
    f: InputFile,
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: str,
    *,
    tally: Tally,
    unit: str,
    by_line: bool,
) -> _Residue | None:
    before = _max_rowid(con, table)
    try:
        con.execute(mapping.insert_sql(table, source), {"file": f.name, "path": str(f.path)})
    except mapping.DUCKDB_ERRORS:
        return None
    lines: dict[int, str] | None = None
    if by_line and not _number_lines(con, table, before):
        # no blank line: a record's number is its physical line, which caveats give
        lines = {
            int(k): str(text)
            for k, text in con.execute(
                f"SELECT source_line, raw->>'$' FROM \"{table}\""  # noqa: S608 - plain identifier, values bound
                " WHERE rowid > ? AND provider = ? AND json_type(raw) = 'VARCHAR'",
                [before, RESIDUE],
            ).fetchall()
        }
    units = sorted(
        int(r[0])
        for r in con.execute(
            f'SELECT DISTINCT source_line FROM "{table}" WHERE rowid > ? AND provider = ?',  # noqa: S608 - plain identifier, values bound
            [before, RESIDUE],
        ).fetchall()
    )
    skips = con.execute(
        f'SELECT provider, count(*), min(source_line) FROM "{table}"'  # noqa: S608 - plain identifier, values bound
        " WHERE rowid > ? AND starts_with(provider, ?) AND NOT list_contains(?, source_line)"
        " GROUP BY provider ORDER BY provider",
        [before, SKIP, units],
    ).fetchall()
    for provider, n, first in skips:
        tally.skip(str(provider)[len(SKIP) :], f.name, (f"{unit} {first}",), n=int(n))
    if units and not by_line:
        # the other rows of a unit Python reads again (a document, a payload) go too
        con.execute(
            f'UPDATE "{table}" SET provider = ? WHERE rowid > ?'  # noqa: S608 - plain identifier, values bound
            " AND NOT starts_with(provider, ?) AND list_contains(?, source_line)",
            [RESIDUE, before, "!", units],
        )
    if lines is not None and set(lines) != set(units):
        lines = None  # a residue row without its text: read those lines from the file
    return _Residue(set(units), lines)


def _number_lines(con: duckdb.DuckDBPyConnection, table: str, before: int) -> int:
    """Line numbers (records, as :func:`.framing.iter_lines` counts them) for the rows just
    inserted one per line, and the event key of those without an auditID, which is made
    from it. The new rows' rowids are consecutive, in file order, from the first one
    (deleted rows before them keep their rowids: ``before`` is no start). Returns the
    number of blank lines."""
    row = con.execute(
        f'SELECT count(*) FROM "{table}" WHERE rowid > ? AND provider = ?',  # noqa: S608 - plain identifier, values bound
        [before, BLANK],
    ).fetchone()
    if row and row[0]:
        # blank lines are no records: number the others (rare; a window over the file)
        numbers = f"""(SELECT rowid AS rid, row_number() OVER (ORDER BY rowid) AS k
                       FROM "{table}" WHERE rowid > $before AND provider <> '{BLANK}')"""  # noqa: S608 - plain identifier, values bound
    else:
        numbers = f"""(SELECT rowid AS rid, rowid - min(rowid) OVER () + 1 AS k
                       FROM "{table}" WHERE rowid > $before)"""  # noqa: S608 - plain identifier, values bound
    con.execute(
        f'''UPDATE "{table}" SET source_line = x.k,
              event_key = coalesce(event_key, provider || ':' || source_file || ':'
                                   || CAST(x.k AS VARCHAR))
            FROM {numbers} x WHERE "{table}".rowid = x.rid''',  # noqa: S608 - plain identifier, values bound
        {"before": before},
    )
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class _Residue:
    """What a columnar route left to Python: the units to re-read, and for a line route
    without blank lines the text of each (then the file is not read again)."""

    units: set[int]
    lines: dict[int, str] | None = None


def _read_lines(lines: dict[int, str], ctx: Ctx) -> None:
    for k in sorted(lines):
        _jsonl_line(framing.Line(k, k, lines[k].encode("utf-8", "surrogatepass")), ctx)
    ctx.stager.flush()


def _read_python(f: InputFile, fr: Framing, ctx: Ctx, only: set[int] | None = None) -> None:
    try:
        with open_layers(f.path) as stream:
            if fr is Framing.JSONL:
                _jsonl(stream, ctx, only)
            elif fr is Framing.EXPORT_TEXT:
                _export_text(stream, ctx)
            elif fr is Framing.CSV:
                _csv(stream, ctx)
            elif fr is Framing.YAML:
                _documents(framing.iter_yaml(stream), ctx, "yaml")
            else:
                _documents(framing.iter_values(stream), ctx, "json", only)
    except _READ_ERRORS as exc:
        ctx.tally.caveat(
            "unreadable",
            f"reading stopped: {_reason(exc)}; records before this point were loaded",
            f.name,
        )
    ctx.stager.flush()


def _jsonl(stream: IO[bytes], ctx: Ctx, only: set[int] | None) -> None:
    for ln in framing.iter_lines(stream):
        if only is not None and ln.record not in only:
            continue
        _jsonl_line(ln, ctx)


def _jsonl_line(ln: framing.Line, ctx: Ctx) -> None:
    where = Where(ln.record, (f"line {ln.physical}",), "jsonl")
    if ln.data is None:
        ctx.caveat("oversized-line", f"line longer than {framing.MAX_LINE} bytes skipped", where)
        return
    try:
        obj = orjson.loads(ln.data)
    except orjson.JSONDecodeError as exc:
        text = ln.data.decode("utf-8", "replace")
        salvage_and_report(
            text,
            where,
            ctx,
            kind="malformed-line",
            why=f"is not valid JSON ({str(exc)[:80]})",
            what="line",
            provider="native",
            envelope="jsonl",
            raw=text[:65536],
        )
        return
    dispatch(obj, where, ctx)


def _export_text(stream: IO[bytes], ctx: Ctx) -> None:
    for ln in framing.iter_lines(stream):
        where = Where(ln.record, (f"line {ln.physical}",), "text")
        if ln.data is None:
            ctx.caveat(
                "oversized-line", f"line longer than {framing.MAX_LINE} bytes skipped", where
            )
            continue
        handle_export_line(ln.data.rstrip(b"\r"), where, ctx)


def _csv(stream: IO[bytes], ctx: Ctx) -> None:
    for line, row in framing.iter_csv(stream):
        where = Where(line, (f"line {line}",), "csv")
        if isinstance(row, str):
            ctx.caveat("malformed-line", row, where)
            continue
        if None in row:
            # more cells than header columns: a broken row, read what the header names
            del row[None]
            ctx.caveat("malformed-line", "CSV row with more cells than the header", where)
        dispatch(row, where, ctx)


def _documents(
    values: Iterator[framing.Value], ctx: Ctx, container: str, only: set[int] | None = None
) -> None:
    for v in values:
        if only is not None and v.index not in only:
            continue
        step = f"[{v.index - 1}]" if v.in_array else f"value {v.index} at offset {v.offset}"
        if container == "yaml":
            step = f"document {v.index}"
        where = Where(v.index, (step,), "array" if v.in_array else container)
        if v.error is not None:
            ctx.caveat(
                "malformed-document",
                f"{v.error}; reading resumes at the next value found, if any",
                where,
                offset=v.offset,
            )
            continue
        dispatch(v.value, where, ctx)


def _deduplicate(
    con: duckdb.DuckDBPyConnection, table: str, start: int
) -> tuple[int, dict[str, int]]:
    """Drop events whose (auditID, stage) was already seen (in this load or an earlier one
    into the same table); the first seen is kept."""
    # The keys seen twice first (one hash aggregate), then the order within those only: a
    # window partitioned by every (auditID, stage) of a million events took 0.3 s.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _pm_audit_dups AS
            WITH twice AS (
              SELECT audit_id, stage FROM "{table}" WHERE audit_id IS NOT NULL
              GROUP BY audit_id, stage HAVING count(*) > 1
            )
            SELECT rid, provider || '/' || envelope AS src FROM (
              SELECT e.rowid AS rid, e.provider, e.envelope,
                     row_number() OVER (PARTITION BY e.audit_id, e.stage ORDER BY e.rowid) AS k
              FROM "{table}" e SEMI JOIN twice t
                ON e.audit_id = t.audit_id AND e.stage IS NOT DISTINCT FROM t.stage)
            WHERE k > 1 AND rid > ?""",  # noqa: S608 - plain identifier, values bound
        [start],
    )
    try:
        by_source = {
            str(src): int(n)
            for src, n in con.execute(
                "SELECT src, count(*) FROM _pm_audit_dups GROUP BY src ORDER BY src"
            ).fetchall()
        }
        if by_source:
            con.execute(
                f'DELETE FROM "{table}" WHERE rowid IN (SELECT rid FROM _pm_audit_dups)'  # noqa: S608 - plain identifier
            )
    finally:
        con.execute("DROP TABLE IF EXISTS _pm_audit_dups")
    return sum(by_source.values()), by_source


def _dup_caveat(n: int, by_source: dict[str, int]) -> Caveat:
    return Caveat(
        kind="duplicates",
        message=f"{n} duplicate event(s) (same auditID and stage) dropped; the first seen kept",
        provenance=Provenance(source="file", parser="podmortem.audit.sources"),
        details={"count": n, "by_source": by_source},
    )


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
