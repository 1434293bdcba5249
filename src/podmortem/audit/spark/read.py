"""Audit logs into a Spark DataFrame of normalized events, with podmortem's own readers
running inside the Spark workers, so both engines normalize identically (no second reader).

- Local paths are expanded on the driver exactly as the embedded engine expands them (same
  names, order, and links not followed) and each worker opens its files itself: nothing is
  copied through the JVM, and a large file streams from disk as it does in the embedded
  engine. On a real cluster a local path must therefore exist on every worker (a shared
  mount); otherwise give a URL.
- URLs (``s3a://``, ``gs://``, ``abfss://``, ``hdfs://``, ``file:``) are listed and read by
  Spark's ``binaryFile`` source, i.e. by the Hadoop connector the cluster has configured for
  the scheme. Each object comes to the worker whole (Spark's unit for binary files), so
  objects above a size limit are not read and a caveat says so. Hadoop skips names starting
  with ``_`` or ``.`` when listing a folder (its rule, not ours; also said in the docs).
- Datasets written by ``audit export-parquet`` are read by Spark's Parquet reader directly.

Each worker loads one file into a private DuckDB database with the readers
(``podmortem.audit.sources``), then streams the rows out as Arrow batches tagged with the
file's position and each row's position in it, plus one row carrying the file's accounting
(skips, caveats). Deduplication on (auditID, stage) happens afterwards across all files,
keeping the first seen in that order: the embedded engine's rule.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podmortem.audit.model import COLUMNS, TABLE
from podmortem.audit.sources.tally import Tally
from podmortem.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|file:)")
DEFAULT_MAX_OBJECT_BYTES = 1 << 30  # one object through the JVM into a worker, whole
WORKER_MEMORY_LIMIT = "768MB"
IN_MEMORY_BYTES = 64 << 20  # each worker's DuckDB (it spills to its scratch folder)
FI, ORD, META = "pm_fi", "pm_ord", "pm_meta"

_SPARK_TYPES = {
    "VARCHAR": "string",
    "VARCHAR[]": "array<string>",
    "JSON": "string",
    "INTEGER": "int",
    "BIGINT": "bigint",
    "BOOLEAN": "boolean",
    "TIMESTAMPTZ": "timestamp",
}
EVENT_DDL = ", ".join(f"`{c}` {_SPARK_TYPES[t]}" for c, t, _ in COLUMNS)
STAGED_DDL = f"{EVENT_DDL}, `{FI}` bigint, `{ORD}` bigint, `{META}` string"


@dataclass(slots=True)
class Inputs:
    """What to read: local files (name as given, path), object URLs, Parquet datasets."""

    local: list[tuple[int, str, str]] = field(default_factory=list)  # (fi, name, path)
    urls: list[str] = field(default_factory=list)
    # (fi, folder or file, its Parquet files)
    parquet: list[tuple[int, str, list[str]]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def plan(inputs: Sequence[str | Path], spool: Path) -> Inputs:
    from podmortem.audit.parquet import parquet_dataset
    from podmortem.audit.sources.inputs import expand

    out = Inputs()
    fi = 0
    rest: list[str | Path] = []
    # Datasets first, as the embedded engine loads them (it matters for "first seen").
    for item in inputs:
        found = None if URL.match(str(item)) else parquet_dataset(item)
        if found:
            out.parquet.append((fi, str(Path(item).resolve()), [str(f) for f in found]))
            fi += 1
        else:
            rest.append(item)
    for item in rest:
        text = str(item)
        if URL.match(text):
            out.urls.append(text)
            continue
        files, skipped = expand([item], spool)
        out.skipped += [(s.name, s.reason) for s in skipped]
        for f in files:
            out.local.append((fi, f.name, str(Path(f.path).resolve())))
            fi += 1
    return out


# ----------------------------------------------------------------------------- worker side


def _read_batches(
    batches: Iterator[pa.RecordBatch], *, keep_raw: bool, memory_limit: str
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: each input row is one file (fi, name, path or content)."""
    for batch in batches:
        rows = batch.to_pylist()
        for row in rows:
            yield from _read_file(
                int(row["fi"]),
                str(row["name"]),
                row.get("path"),
                row.get("content"),
                keep_raw=keep_raw,
                memory_limit=memory_limit,
            )


def _read_file(
    fi: int,
    name: str,
    path: str | None,
    content: bytes | None,
    *,
    keep_raw: bool,
    memory_limit: str,
) -> Iterator[pa.RecordBatch]:
    import duckdb
    import pyarrow as pa

    from podmortem.audit.model import create_table
    from podmortem.audit.parquet import CLUSTER, SEQ, is_parquet
    from podmortem.audit.sources.inputs import InputFile

    # The loader's per-file step (the embedded load() runs it for each file in turn).
    from podmortem.audit.sources.loader import read_file as read_one
    from podmortem.audit.sources.staging import Stager

    schema = arrow_schema()
    tally = Tally()
    content_was_given = content is not None
    with tempfile.TemporaryDirectory(prefix="podmortem-spark-") as tmp:
        scratch = Path(tmp)
        if content is not None:
            src = scratch / "object"
            src.write_bytes(content)
            del content
        else:
            src = Path(str(path))
        # A small file loads in memory; a large one into a database file under the memory
        # limit, which DuckDB evicts to (as the embedded engine does for the whole input).
        big = src.stat().st_size > IN_MEMORY_BYTES if src.is_file() else True
        con = duckdb.connect(str(scratch / "events.duckdb") if big else ":memory:")
        try:
            con.execute("SET temp_directory = ?", [str(scratch)])
            con.execute(f"SET memory_limit = '{memory_limit}'")
            # One Spark task is one core; a large file gets a second thread, so that the
            # last large file of a run (files are not split across tasks) does not leave
            # the other core idle. At worst two threads per core, briefly.
            con.execute(f"SET threads = {2 if big else 1}")
            con.execute("SET enable_progress_bar = false")
            # Without raw (no rule reads it) the original record is not shipped at all.
            cols = ", ".join(
                f'CAST(NULL AS VARCHAR) AS "{c}"'
                if c == "raw" and not keep_raw
                else (f'CAST("{c}" AS VARCHAR) AS "{c}"' if t == "JSON" else f'"{c}"')
                for c, t, _ in COLUMNS
            )
            if content_was_given and is_parquet(src):
                # An object of a dataset written by `audit export-parquet` (recognised from
                # its content): its rows are normalized events already.
                pq_cols = cols.replace('"cluster"', f'"{CLUSTER}" AS "cluster"', 1)
                reader = con.sql(
                    f"SELECT {pq_cols}, CAST({int(fi)} AS BIGINT) AS {FI}, {SEQ} AS {ORD},"  # noqa: S608 - our own identifiers, an int
                    f" CAST(NULL AS VARCHAR) AS {META} FROM read_parquet(?) ORDER BY {SEQ}",
                    params=[str(src)],
                ).to_arrow_reader(8192)
            else:
                create_table(con, TABLE)
                stager = Stager(con, TABLE, scratch, tally)
                try:
                    read_one(
                        InputFile(name=name, path=src), con, TABLE, stager, tally, keep_raw=keep_raw
                    )
                finally:
                    stager.close()
                reader = con.sql(
                    f"SELECT {cols}, CAST({int(fi)} AS BIGINT) AS {FI}, rowid AS {ORD},"  # noqa: S608 - our own identifiers, an int
                    f' CAST(NULL AS VARCHAR) AS {META} FROM "{TABLE}" ORDER BY rowid'
                ).to_arrow_reader(8192)
            for b in reader:
                yield pa.Table.from_batches([b]).cast(schema).to_batches()[0]
        finally:
            con.close()
    meta: dict[str, list[Any]] = {c: [None] for c in schema.names}
    meta[FI] = [fi]
    meta[META] = [json.dumps(tally.to_dict(name), default=str)]
    yield pa.RecordBatch.from_pydict(meta, schema=schema)


def arrow_schema() -> pa.Schema:
    """STAGED_DDL as Arrow, as Spark expects it back from a worker (no JVM needed)."""
    import pyarrow as pa

    types = {
        "VARCHAR": pa.string(),
        "VARCHAR[]": pa.list_(pa.field("element", pa.string())),
        "JSON": pa.string(),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    }
    fields = [pa.field(c, types[t]) for c, t, _ in COLUMNS]
    fields += [pa.field(FI, pa.int64()), pa.field(ORD, pa.int64()), pa.field(META, pa.string())]
    return pa.schema(fields)


# ----------------------------------------------------------------------------- driver side


@dataclass(slots=True)
class Staged:
    """Events read but not yet deduplicated, and each file's accounting."""

    frame: DataFrame  # STAGED_DDL rows; META rows carry the accounting
    files: list[str]
    too_large: list[tuple[str, int]]
    # Only Parquet datasets: nothing for the readers to do, no staging write needed.
    columnar_only: bool = False


def stage(
    spark: SparkSession,
    inp: Inputs,
    *,
    keep_raw: bool = True,
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    memory_limit: str = WORKER_MEMORY_LIMIT,
) -> Staged:
    from pyspark.sql import functions as F  # noqa: N812 - Spark's own convention

    frames: list[DataFrame] = []
    files: list[str] = []
    too_large: list[tuple[str, int]] = []
    body = functools.partial(_read_batches, keep_raw=keep_raw, memory_limit=memory_limit)
    file_ddl = "fi bigint, name string, path string, content binary"
    rows: list[tuple[int, str, str | None, bytes | None]] = [
        (fi, name, path, None) for fi, name, path in inp.local
    ]
    names = {fi: name for fi, name, _ in inp.local}
    next_fi = 1 + max([fi for fi, *_ in inp.local] + [fi for fi, *_ in inp.parquet] + [-1])
    if rows:
        rdd = spark.sparkContext.parallelize(rows, max(1, min(len(rows), 256)))
        frames.append(spark.createDataFrame(rdd, file_ddl).mapInArrow(body, STAGED_DDL))
    if inp.urls:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException

        try:
            listing = (
                spark.read.format("binaryFile")
                .option("recursiveFileLookup", "true")
                .load(inp.urls)
                .select("path", "length")
                .collect()
            )
        except (PySparkException, Py4JJavaError) as exc:  # no such object; no connector
            reason = " ".join(str(exc).split())[:300]
            raise InputError(f"cannot list {', '.join(inp.urls)[:300]}: {reason}") from None
        objects = sorted((str(r["path"]), int(r["length"])) for r in listing)
        keep: list[tuple[int, str]] = []
        for path, length in objects:
            if length > max_object_bytes:
                too_large.append((path, length))
                continue
            keep.append((next_fi, path))
            names[next_fi] = path
            next_fi += 1
        if keep:
            index = spark.createDataFrame(keep, "fi bigint, path string")
            content = (
                spark.read.format("binaryFile")
                .option("recursiveFileLookup", "true")
                .load(inp.urls)
                .where(F.col("length") <= max_object_bytes)
                .join(F.broadcast(index), "path")
                .select(
                    "fi",
                    F.col("path").alias("name"),
                    F.lit(None).cast("string").alias("path"),
                    "content",
                )
                .repartition(max(1, min(len(keep), 256)), "fi")
            )
            frames.append(content.mapInArrow(body, STAGED_DDL))
    for fi, ds, _ in inp.parquet:
        frames.append(_parquet_frame(spark, ds, fi, keep_raw=keep_raw))
    if not frames:
        raise InputError("no input files found")
    frame = frames[0]
    for f in frames[1:]:
        frame = frame.unionByName(f)
    files = [f for _, _, found in inp.parquet for f in found]
    files += [names[k] for k in sorted(names)]
    only = bool(inp.parquet) and not inp.local and not inp.urls
    return Staged(frame=frame, files=files, too_large=too_large, columnar_only=only)


def _parquet_frame(spark: SparkSession, path: str, fi: int, *, keep_raw: bool) -> DataFrame:
    from pyspark.sql import functions as F  # noqa: N812

    from podmortem.audit.parquet import ADDED_LATER, CLUSTER, SEQ

    # Partition folders are layout only: the exact cluster name is in each row.
    df = spark.read.option("recursiveFileLookup", "true").parquet(path)
    present = set(df.columns)
    # A dataset written before a column existed (log_name) reads it as NULL.
    cols = [
        (
            F.lit(None).cast(_SPARK_TYPES[t]).alias(c)
            if (c == "raw" and not keep_raw) or (c in ADDED_LATER and c not in present)
            else F.col(f"`{CLUSTER if c == 'cluster' else c}`").cast(_SPARK_TYPES[t]).alias(c)
        )
        for c, t, _ in COLUMNS
    ]
    return df.select(
        *cols,
        F.lit(fi).cast("bigint").alias(FI),
        F.col(SEQ).cast("bigint").alias(ORD),
        F.lit(None).cast("string").alias(META),
    )


def file_accounting(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The META rows, in input order."""
    return [json.loads(r[META]) for r in sorted(rows, key=lambda r: int(r[FI]))]
