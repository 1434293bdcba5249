"""Normalized audit events as Hive-partitioned Parquet (``cluster=.../day=YYYY-MM-DD/``),
the form both engines read fastest, and reading it back.

Written by DuckDB (``COPY ... PARTITION_BY``) after the usual readers and deduplication, so a
Parquet dataset holds exactly the ``audit_events`` rows (podmortem.audit.model) plus
``pm_seq``, the position of each event in the load (Spark orders by it; the embedded engine
reads the files in order, each file in load order, since sorting a million full rows does not
fit its memory limit, and nothing that decides a finding depends on that order). DuckDB
percent-escapes partition values (a cluster named ``a/../b`` is the folder
``cluster=a%2F..%2Fb``) and writes a missing value as ``__HIVE_DEFAULT_PARTITION__``. The
folders are for layout and pruning only: the exact cluster name is also kept in each row
(``pm_cluster``), and podmortem reads that, so a dataset copied elsewhere (into a case, under
renamed folders) reads back the same.

A Parquet input is recognised from content (the ``PAR1`` magic at both ends), never from the
file name: a file, or a folder whose regular files are all Parquet.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by the loader; paths and
# values are bound as parameters.
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from podmortem.audit.model import COLUMN_NAMES, COLUMNS, NORMALIZED_JSON, TABLE
from podmortem.audit.sources.tally import LoadResult
from podmortem.errors import InputError

MAGIC = b"PAR1"
PARTITION_BY = ("cluster", "day")
SEQ = "pm_seq"
CLUSTER = "pm_cluster"
# The partition day of an event: its UTC date (stage time, else when it was received).
DAY_SQL = "strftime(coalesce(stage_timestamp, request_received) AT TIME ZONE 'UTC', '%Y-%m-%d')"
MAX_FILES = 100_000


@dataclass(frozen=True, slots=True)
class ExportResult:
    events: int
    files: list[str]  # Parquet files written, relative to the output folder
    load: LoadResult


def is_parquet(path: Path) -> bool:
    """``PAR1`` at the start and at the end (a Parquet file's header and footer magic)."""
    try:
        size = path.stat().st_size
        if size < 12:
            return False
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(size - 4)
            return head == MAGIC and f.read(4) == MAGIC
    except OSError:
        return False


def parquet_dataset(item: str | Path) -> list[Path] | None:
    """The Parquet files of an input that is a Parquet file or a folder holding only Parquet
    files (links not followed, as for every evidence folder); None for anything else."""
    p = Path(item)
    if str(item) == "-":
        return None
    if p.is_file():
        return [p] if is_parquet(p) else None
    if not p.is_dir():
        return None
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            f = Path(dirpath) / name
            if f.is_symlink() or not f.is_file() or not is_parquet(f):
                return None
            files.append(f)
            if len(files) > MAX_FILES:
                raise InputError(f"{item}: more than {MAX_FILES} Parquet files")
    return files or None


def _source(files: Sequence[Path]) -> tuple[str, list[object]]:
    return (
        "read_parquet(?, hive_partitioning = false, union_by_name = true)",
        [[str(f) for f in files]],
    )


# Columns added after the first datasets were written: an older dataset reads them as NULL.
ADDED_LATER = frozenset({"log_name"})


def read_sql(files: Sequence[Path], present: set[str] | None = None) -> tuple[str, list[object]]:
    """A DuckDB SELECT of the ``audit_events`` columns from a partitioned dataset, and its
    parameters. ``present``: the dataset's columns, when known (a column added later and
    absent from it is read as NULL)."""
    source, params = _source(files)

    def col(c: str, t: str) -> str:
        name = CLUSTER if c == "cluster" else c
        if present is not None and name not in present and c in ADDED_LATER:
            return f'CAST(NULL AS {t}) AS "{c}"'
        if c in NORMALIZED_JSON:
            # CAST keeps the text as written; the rules need it as DuckDB writes it
            return f'json("{name}") AS "{c}"'
        return f'CAST("{name}" AS {t})'

    cols = ", ".join(col(c, t) for c, t, _ in COLUMNS)
    # Not sorted on pm_seq: a sort of a million full rows does not fit the analysis memory
    # limit. Rows keep their order within each file; nothing that decides a finding
    # depends on the order across files (the dataset is deduplicated already).
    return f"SELECT {cols} FROM {source}", params


def load_parquet(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path], table: str = TABLE
) -> dict[str, int]:
    """Append a dataset's events to ``table``; returns counts by ``provider/envelope``."""
    source, params = _source(files)
    cols = ", ".join(f'"{c}"' for c in COLUMN_NAMES)
    try:
        present = {
            str(r[0]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}", params).fetchall()
        }
        sql, params = read_sql(files, present)
        con.execute(f'INSERT INTO "{table}" ({cols}) {sql}', params)
        counts = con.execute(
            f"SELECT provider, envelope, count(*) FROM {source} GROUP BY ALL ORDER BY ALL",
            params,
        ).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"not a podmortem event dataset: {_one_line(exc)}") from None
    return {f"{p}/{e}": int(n) for p, e, n in counts}


def export(
    con: duckdb.DuckDBPyConnection, out_dir: Path, load: LoadResult, table: str = TABLE
) -> ExportResult:
    """Write ``table`` (already loaded) under ``out_dir`` (which must not exist or be empty)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir} exists and is not an empty folder; refusing to write there")
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(f'"{c}"' for c in COLUMN_NAMES if c != "cluster")
    con.execute(
        f"COPY (SELECT {cols}, cluster AS {CLUSTER}, rowid AS {SEQ}, cluster, {DAY_SQL} AS day"
        f' FROM "{table}"'
        " ORDER BY rowid)"
        f" TO '{_path_literal(out_dir)}' (FORMAT PARQUET, PARTITION_BY (cluster, day),"
        " OVERWRITE_OR_IGNORE true)"
    )
    written = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.parquet"))
    return ExportResult(events=load.events_read, files=written, load=load)


def scratch_connection(
    memory_limit: str,
) -> tuple[duckdb.DuckDBPyConnection, tempfile.TemporaryDirectory[str]]:
    # In memory, spilling to the scratch folder under the limit, as analyze does
    # (audit.analyze.scratch_connection: a database file compressed and wrote every commit).
    tmp = tempfile.TemporaryDirectory(prefix="podmortem-parquet-")
    con = duckdb.connect()
    con.execute("SET temp_directory = ?", [tmp.name])
    con.execute(f"SET memory_limit = '{memory_limit}'")
    return con, tmp


def _path_literal(p: Path) -> str:
    # COPY ... TO takes no parameter: the examiner's output path, quoted.
    text = str(p.resolve())
    if "\x00" in text:
        raise InputError("NUL in output path")
    return text.replace("'", "''")


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:300]
