"""``audit analyze --engine spark``: the same rules, compiled to Spark SQL, over the same
normalized events, with the same findings.

1. The readers run in the Spark workers (:mod:`.read`); their rows are written once to a
   staging Parquet folder (so the readers run once, however many queries follow).
2. Deduplication on (auditID, stage), first seen kept, in input order: a window over the
   few columns involved.
3. One pass counts events per source and what the blind-spot caveats need.
4. Every detection rule, compiled from the same parsed Sigma rule to Spark SQL
   (:mod:`podmortem.audit.dialect`), runs in one ``UNION ALL``; a rule Spark refuses is
   reported by file and reason and the others still run.
5. Only the matched events (without ``raw``) come back to the driver, into a small DuckDB
   table in their original order, and the embedded engine's own code turns the matches into
   findings (grouping, actor classes, suppression, correlations). The findings cannot
   differ because that code is the same code.

Attack reconstruction (sessions, credentials, narrative) needs every event in one place and
is not run by this engine: run ``audit analyze`` on a narrowed input (or on Parquet written
by ``audit export-parquet``) for it.
"""

# ruff: noqa: S608 -- SQL is generated here by design: rule predicates come from the rule
# compiler (literals quoted by the dialect), column names from the model.
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.coverage import caveats_from_counts
from podmortem.audit.engine import HITS, EngineResult, summarise_hits
from podmortem.audit.model import COLUMNS, TABLE
from podmortem.audit.ruleset import AuditRule, RuleError, RuleSet
from podmortem.audit.sources.tally import LoadResult, Tally
from podmortem.audit.spark.read import (
    DEFAULT_MAX_OBJECT_BYTES,
    FI,
    META,
    ORD,
    WORKER_MEMORY_LIMIT,
    Inputs,
    Staged,
    file_accounting,
    plan,
    stage,
)
from podmortem.audit.spark.session import DEFAULT_MASTER, require_pyspark, session
from podmortem.errors import InputError
from podmortem.findings import Caveat, Severity

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import DataFrame, SparkSession

    from podmortem.audit.analyze import AnalysisResult

ENGINE = "spark"
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
# While podmortem runs (the caller's values are put back afterwards). Whole-stage code
# generation compiles one Java method for the rule pass, with every rule in it; Janino takes
# longer over that than the scan itself (250k events: 15-17 s against 9 s without it).
RUN_SETTINGS = {"spark.sql.codegen.wholeStage": "false"}
RAW = "`raw`"
ACTOR = "pm_actor_class"  # how a compiled Spark predicate names the original record
_READS = "('get', 'list', 'watch')"


def analyze_spark(
    inputs: Sequence[str | Path],
    *,
    master: str = DEFAULT_MASTER,
    spark: SparkSession | None = None,
    rules: RuleSet | None = None,
    sigma_dirs: Sequence[Path] = (),
    rules_dirs: Sequence[Path] = (),
    builtin: bool = True,
    min_severity: Severity = Severity.INFORMATIONAL,
    policy: ActorPolicy | None = None,
    keep_raw: bool | None = None,
    scratch: str | None = None,
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    worker_memory_limit: str = WORKER_MEMORY_LIMIT,
) -> AnalysisResult:
    """As :func:`podmortem.audit.analyze.analyze`, on Spark. ``scratch`` is where the staged
    events are written (a URL every worker can reach on a real cluster; a local temporary
    folder by default). ``keep_raw``: stage each event's original record too; by default
    only when a rule searches it (field-less keywords), since it is most of the bytes."""
    from podmortem.audit.analyze import AnalysisResult, load_rules, result_caveats

    require_pyspark()
    if not inputs:
        raise InputError("no input given")
    policy = policy or ActorPolicy.default_policy()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    rules = (
        rules
        if rules is not None
        else load_rules(builtin=builtin, sigma_dirs=sigma_dirs, rules_dirs=rules_dirs)
    )
    seconds["rules"] = time.perf_counter() - t0
    compiled = spark_predicates(rules.detections)
    if keep_raw is None:
        keep_raw = any(sql and RAW in sql for _, sql, _ in compiled)
    spark = spark or session(master)
    with (
        settings(spark, RUN_SETTINGS),
        tempfile.TemporaryDirectory(prefix="podmortem-spark-") as tmp,
    ):
        t1 = time.perf_counter()
        inp = plan(inputs, Path(tmp))
        staged = stage(
            spark,
            inp,
            keep_raw=keep_raw,
            max_object_bytes=max_object_bytes,
            memory_limit=worker_memory_limit,
        )
        target = scratch.rstrip("/") + f"/staged-{Path(tmp).name}" if scratch else tmp + "/staged"
        if staged.columnar_only:
            df = staged.frame  # Parquet datasets: read directly, nothing to stage
        else:
            # One file per Arrow batch into the readers (a batch holds whole objects'
            # bytes); only while staging: results come back in batches of the usual size.
            with settings(spark, {ARROW_BATCH: "1"}):
                staged.frame.write.mode("errorifexists").parquet(target)
            df = spark.read.parquet(target)
        accounting = file_accounting(df.where(f"{META} IS NOT NULL").select(FI, META).collect())
        events, loaded, dup_by_source, blind = _dedupe_and_count(
            spark, df.where(f"{META} IS NULL"), staged.files
        )
        loaded = _with_accounting(loaded, dup_by_source, accounting, inp, staged)
        seconds["load"] = time.perf_counter() - t1
        events.createOrReplaceTempView(TABLE)
        result = EngineResult()
        t2 = time.perf_counter()
        matched, ok_rules = _match(spark, compiled, rules.detections, result)
        result.seconds["match"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        con = _matched_events(matched)
        matched.unpersist()
        spark.catalog.dropTempView(TABLE)
        result.seconds["collect"] = time.perf_counter() - t3
        try:
            summarise_hits(con, rules, ok_rules, table=TABLE, policy=policy, result=result)
        finally:
            con.close()
    caveats = result_caveats(loaded.caveats, blind, rules, result)
    return AnalysisResult(
        events_read=loaded.events_read,
        events_by_source=dict(loaded.events_by_source),
        skipped=dict(loaded.skipped),
        duplicates=loaded.duplicates,
        files=list(loaded.files),
        caveats=caveats,
        rules=rules,
        engine=result,
        findings=[f for f in result.findings if f.severity >= min_severity],
        min_severity=min_severity,
        seconds=seconds,
        reconstruction=None,
    )


@contextmanager
def settings(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    before = {k: spark.conf.get(k, None) for k in values}
    for k, v in values.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, old in before.items():
            if old is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, old)


def _dedupe_and_count(
    spark: SparkSession, ev: DataFrame, files: list[str]
) -> tuple[DataFrame, LoadResult, dict[str, int], list[Caveat]]:
    ev.createOrReplaceTempView("pm_staged")
    dups = spark.sql(
        f"""SELECT {FI}, {ORD}, provider, envelope FROM (
              SELECT {FI}, {ORD}, provider, envelope,
                     row_number() OVER (PARTITION BY audit_id, stage ORDER BY {FI}, {ORD}) AS k
              FROM pm_staged WHERE audit_id IS NOT NULL)
            WHERE k > 1"""
    ).cache()
    dup_by_source = {
        f"{r['provider']}/{r['envelope']}": int(r["n"])
        for r in dups.groupBy("provider", "envelope")
        .count()
        .withColumnRenamed("count", "n")
        .collect()
    }
    duplicates = sum(dup_by_source.values())
    events = ev.join(dups.select(FI, ORD), [FI, ORD], "left_anti") if duplicates else ev
    if not duplicates:
        dups.unpersist()
    events.createOrReplaceTempView("pm_events")
    counts = spark.sql(
        f"""SELECT provider, envelope, count(*) AS n,
                   count(CASE WHEN verb IN {_READS} THEN 1 END) AS reads,
                   count(CASE WHEN request_object IS NOT NULL THEN 1 END) AS bodies
            FROM pm_events GROUP BY provider, envelope"""
    ).collect()
    by_source = {
        f"{r['provider']}/{r['envelope']}": int(r["n"])
        for r in sorted(counts, key=lambda r: (str(r["provider"]), str(r["envelope"])))
    }
    per_provider: dict[Any, list[int]] = {}
    for r in counts:
        acc = per_provider.setdefault(r["provider"], [0, 0, 0])
        acc[0] += int(r["n"])
        acc[1] += int(r["reads"])
        acc[2] += int(r["bodies"])
    blind = caveats_from_counts(
        (p, *v) for p, v in sorted(per_provider.items(), key=lambda kv: str(kv[0]))
    )
    loaded = LoadResult(
        events_read=sum(by_source.values()),
        events_by_source=by_source,
        caveats=[],
        skipped={},
        files=list(files),
        duplicates=duplicates,
    )
    return events, loaded, dup_by_source, blind


def _with_accounting(
    loaded: LoadResult,
    dup_by_source: dict[str, int],
    accounting: list[dict[str, Any]],
    inp: Inputs,
    staged: Staged,
) -> LoadResult:
    """The readers' caveats and skips in the embedded engine's order: inputs not read, each
    file's in input order, duplicates, then the per-file summaries."""
    from podmortem.audit.sources.loader import _dup_caveat

    tally = Tally()
    for name, reason in inp.skipped:
        tally.caveat("input-skipped", f"not read: {reason}", name)
    for url, size in staged.too_large:
        tally.caveat(
            "object-too-large",
            f"not read: {size} bytes, more than the Spark engine's per-object limit",
            url,
            size=size,
        )
    for acc in accounting:
        tally.merge(acc)
    if loaded.duplicates:
        tally.caveats.append(_dup_caveat(loaded.duplicates, dup_by_source))
    tally.summarise()
    return LoadResult(
        events_read=loaded.events_read,
        events_by_source=loaded.events_by_source,
        caveats=tally.caveats,
        skipped=dict(sorted(tally.skipped.items())),
        files=loaded.files,
        duplicates=loaded.duplicates,
    )


def spark_predicates(detections: Sequence[AuditRule]) -> list[tuple[int, str | None, str]]:
    """(index, Spark SQL predicate or None, reason) for each detection rule."""
    from podmortem.audit.fieldmap import FieldMap, UnknownFieldError
    from podmortem.audit.sigma import CompileError, compile_rule

    fields = FieldMap.default("spark")
    out: list[tuple[int, str | None, str]] = []
    for i, r in enumerate(detections):
        if r.sigma is None:
            out.append((i, None, "no parsed rule to compile"))
            continue
        try:
            out.append((i, compile_rule(r.sigma, fields).sql, ""))
        except (CompileError, UnknownFieldError) as exc:
            out.append((i, None, _one_line(exc)))
    return out


def _match(
    spark: SparkSession,
    compiled: Sequence[tuple[int, str | None, str]],
    detections: Sequence[AuditRule],
    result: EngineResult,
) -> tuple[DataFrame, list[AuditRule]]:
    """The matched events (with ``rs``, the rules each matches), persisted; a rule Spark
    refuses is reported and left out, as the embedded engine does."""
    from pyspark.errors import PySparkException

    branches: list[tuple[int, str]] = []
    for i, sql, reason in compiled:
        if sql is None:
            result.runtime_errors.append(RuleError(detections[i].path, reason))
        else:
            branches.append((i, sql))
    try:
        matched = matched_events(spark, branches)
        matched.count()
    except PySparkException:
        # One rule is refused (Spark cannot analyse it, or a regular expression Java refuses
        # fails at run time): try each alone, keep the others. Analysing every rule alone
        # up front costs a tenth of a second per rule, for a case that rarely happens.
        kept = []
        for i, sql in branches:
            try:
                spark.sql(f"SELECT 1 FROM {TABLE} WHERE {sql}").collect()
                kept.append((i, sql))
            except PySparkException as exc:
                result.runtime_errors.append(RuleError(detections[i].path, _one_line(exc)))
        branches = kept
        matched = matched_events(spark, branches)
        matched.count()
    return matched, [detections[i] for i, _ in branches]


def matched_events(spark: SparkSession, branches: Sequence[tuple[int, str]]) -> DataFrame:
    """Every event that matches at least one rule, without ``raw``, with ``rs``: the indexes
    of the rules it matches. ONE scan of the events evaluates every rule (a UNION ALL of one
    filtered scan per rule, the DuckDB form, would make Spark read the events once per rule)
    and carries the matched rows along (no second scan to fetch them)."""
    from pyspark.storagelevel import StorageLevel

    from podmortem.audit.fieldmap import FieldMap

    cols = ", ".join(f"`{c}`" for c, _, _ in COLUMNS if c != "raw")
    # Rules on `actorClass` would each evaluate the class CASE (dozens of patterns) on every
    # row: the class is computed once per row instead, as the embedded engine computes it
    # once per distinct actor.
    marker = FieldMap.default("spark").resolve("actorClass").sql
    source = TABLE
    if any(marker in p for _, p in branches):
        branches = [(i, p.replace(marker, ACTOR)) for i, p in branches]
        source = f"(SELECT *, {marker} AS {ACTOR} FROM {TABLE})"
    marks = ", ".join(f"CASE WHEN {p} THEN {i} END" for i, p in branches) or "NULL"
    sql = (
        f"SELECT * FROM (SELECT {cols}, {FI}, {ORD},"
        f" filter(array({marks}), m -> m IS NOT NULL) AS rs FROM {source}) WHERE size(rs) > 0"
    )
    return spark.sql(sql).persist(StorageLevel.MEMORY_AND_DISK)


def _matched_events(matched: DataFrame) -> duckdb.DuckDBPyConnection:
    """The matched events in a DuckDB table, in their original order, and the hit table over
    their rowids: what :func:`summarise_hits` reads."""
    import duckdb

    from podmortem.audit.model import create_table

    rows = matched.toArrow()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    create_table(con, TABLE)
    con.register("pm_matched", rows)
    sel = ", ".join("NULL" if c == "raw" else f'CAST("{c}" AS {t})' for c, t, _ in COLUMNS)
    con.execute(f"CREATE TEMP TABLE pm_sorted AS SELECT * FROM pm_matched ORDER BY {FI}, {ORD}")
    con.unregister("pm_matched")
    del rows
    con.execute(f'INSERT INTO "{TABLE}" SELECT {sel} FROM pm_sorted ORDER BY {FI}, {ORD}')
    # Rows went in in (file, position) order: the n-th of that order has rowid n - 1.
    con.execute(
        f"CREATE TEMP TABLE {HITS} AS SELECT CAST(unnest(rs) AS INTEGER) AS r, pos AS row_id"
        f" FROM (SELECT rs, row_number() OVER (ORDER BY {FI}, {ORD}) - 1 AS pos FROM pm_sorted)"
    )
    con.execute("DROP TABLE pm_sorted")
    return con


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:500]
