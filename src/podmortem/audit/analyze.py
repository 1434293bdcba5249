"""``analyze``: read audit logs, run the rules, return findings. The one entry point the CLI,
reports and a later watch mode call.

With a case, the input files are first copied into the case as artifacts (source ``file``,
hashed) and the copies are what gets analysed; events go into the case index's
``audit_events`` table, findings into its ``findings`` table (replacing the previous audit
findings: they are recomputed over all audit events in the case), and the run is recorded in
the custody log.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import duckdb

import podmortem
from podmortem.audit.actors import ActorPolicy
from podmortem.audit.coverage import blind_spots
from podmortem.audit.engine import MAX_FINDINGS_PER_RULE, EngineResult, Suppressed, run
from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct import Reconstruction, reconstruct
from podmortem.audit.ruleset import RuleSet, load_builtin, load_dir
from podmortem.audit.sources.tally import LoadResult
from podmortem.case.paths import safe_component
from podmortem.case.store import Case
from podmortem.errors import InputError
from podmortem.findings import Caveat, Finding, Provenance, Severity

ANALYSIS = "audit"
# DuckDB's memory limit for the event database podmortem opens itself (not a caller's). The
# issue allows 2 GB for 1M events: at 1 GB the attack reconstruction spilled (1M events,
# 28.2 s, peak RSS 1.14 GB); at 1.5 GB the same run took 21.9 s, peak 1.63 GB. Larger
# inputs still stream: DuckDB evicts to the scratch folder.
DEFAULT_MEMORY_LIMIT = "1536MB"
_LIMIT = re.compile(r"[0-9]+(?:\.[0-9]+)?\s*(?:[KMGT]i?B|B)", re.IGNORECASE)
MAX_CASE_INPUT_FILES = 100_000


@dataclass(slots=True)
class AnalysisResult:
    events_read: int
    events_by_source: dict[str, int]
    skipped: dict[str, int]
    duplicates: int
    files: list[str]
    caveats: list[Caveat]
    rules: RuleSet
    engine: EngineResult
    findings: list[Finding]  # at or above min_severity
    min_severity: Severity = Severity.INFORMATIONAL
    seconds: dict[str, float] = field(default_factory=dict)
    reconstruction: Reconstruction | None = None  # actors, sessions, credentials, narrative

    @property
    def suppressed(self) -> list[Suppressed]:
        return self.engine.suppressed

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "tool": "podmortem",
            "version": podmortem.__version__,
            "events_read": self.events_read,
            "events_by_source": dict(self.events_by_source),
            "skipped": dict(self.skipped),
            "duplicates": self.duplicates,
            "files": list(self.files),
            "caveats": [c.to_dict() for c in self.caveats],
            "rules_loaded": {
                "builtin": self.rules.count("builtin"),
                "sigma": self.rules.count("sigma"),
                "custom": self.rules.count("custom"),
            },
            "rule_errors": [e.to_dict() for e in self.rules.errors + self.engine.runtime_errors],
            "rule_warnings": [
                {"rule_id": r.rule_id, "path": r.path, "warning": w}
                for r in self.rules.rules
                for w in r.warnings
            ],
            "rules_skipped_other_logsource": self.rules.skipped_other_logsource,
            "min_severity": str(self.min_severity),
            "findings": [finding_json(f) for f in self.findings],
            "findings_below_min_severity": len(self.engine.findings) - len(self.findings),
            "suppressed": [s.to_dict() for s in self.suppressed],
            "hits_per_rule": dict(sorted(self.engine.hits_per_rule.items())),
            "seconds": {k: round(v, 4) for k, v in {**self.seconds, **self.engine.seconds}.items()},
            **(self.reconstruction.sections() if self.reconstruction else {}),
        }


def finding_json(f: Finding) -> dict[str, Any]:
    """A finding in the issue's JSON shape (actor, source_ips, object, audit_ids on top)."""
    x = dict(f.extra)
    return {
        "rule_id": f.rule_id,
        "title": f.title,
        "severity": str(f.severity),
        "techniques": list(f.techniques),
        "time": f.time.isoformat() if f.time else None,
        "actor": x.pop("actor", f.subject),
        "actor_class": x.pop("actor_class", None),
        "source_ips": x.pop("source_ips", []),
        "object": x.pop("object", None),
        "audit_ids": x.pop("audit_ids", list(f.evidence)),
        "summary": f.summary,
        **x,
    }


def load_rules(
    *,
    builtin: bool = True,
    sigma_dirs: Sequence[Path] = (),
    rules_dirs: Sequence[Path] = (),
) -> RuleSet:
    rules = load_builtin() if builtin else RuleSet()
    for d in sigma_dirs:
        rules.extend(load_dir(Path(d), "sigma"))
    for d in rules_dirs:
        rules.extend(load_dir(Path(d), "custom"))
    return rules


def scratch_connection(folder: str) -> duckdb.DuckDBPyConnection:
    """The event database of an analysis without a case: in memory, spilling to ``folder``
    under the memory limit, so that a large input streams instead of filling RAM. A
    database file was the first choice (869 MB peak for 1M events) but every commit
    compresses and writes the rows: loading 1M events took 26 s against 15 s in memory
    (1.1 GB peak). An earlier in-memory attempt failed for another reason, since fixed:
    the JSON readers sized their buffers for 1 GiB documents and starved under the limit."""
    con = duckdb.connect()
    con.execute("SET temp_directory = ?", [folder])
    return con


def analyze(
    inputs: Sequence[str | Path],
    *,
    case: Case | None = None,
    rules: RuleSet | None = None,
    sigma_dirs: Sequence[Path] = (),
    rules_dirs: Sequence[Path] = (),
    builtin: bool = True,
    min_severity: Severity = Severity.INFORMATIONAL,
    con: duckdb.DuckDBPyConnection | None = None,
    table: str = TABLE,
    policy: ActorPolicy | None = None,
    stdin: BinaryIO | None = None,
    keep_raw: bool | None = None,
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
    reconstruction: bool = True,
) -> AnalysisResult:
    """Load ``inputs`` (files, folders, ``-``), run the rules, return the result.

    ``con`` defaults to an in-memory DuckDB, or the case index with ``case``.

    ``keep_raw``: copy each record read by a columnar route into the ``raw`` column. By
    default only when a rule reads it (Sigma keywords): the original is in the input file
    (with ``case``, its hashed artifact) at ``source_file``/``source_line``, and copying it
    doubled the load of 1M events (17.3 s against 7.5 s, peak RSS 1.8 against 1.2 GB).
    Records the Python route reads (truncated, salvaged, unusual shapes) always keep it."""
    if not inputs:
        raise InputError("no input given")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    rules = (
        rules
        if rules is not None
        else load_rules(builtin=builtin, sigma_dirs=sigma_dirs, rules_dirs=rules_dirs)
    )
    seconds["rules"] = time.perf_counter() - t0
    if keep_raw is None:
        keep_raw = rules.reads_raw

    evidence: list[dict[str, Any]] = []
    own_con = con is None
    scratch: tempfile.TemporaryDirectory[str] | None = None
    if case is not None:
        inputs, evidence = _into_case(case, inputs, stdin)
        if con is None:
            from podmortem.case.index import connect

            con = connect(case)
    if con is None:
        scratch = tempfile.TemporaryDirectory(prefix="podmortem-audit-")
        con = scratch_connection(scratch.name)
    if own_con and memory_limit:
        con.execute(f"SET memory_limit = '{_checked_limit(memory_limit)}'")
    try:
        t1 = time.perf_counter()
        loaded = load_inputs(con, inputs, table=table, stdin=stdin, keep_raw=keep_raw)
        seconds["load"] = time.perf_counter() - t1
        engine_result = run(con, rules, table=table, policy=policy)
        t2 = time.perf_counter()
        # With a case, the request table and addresses stay in its index for the pivots.
        rec = (
            reconstruct(
                con, engine_result.findings, table=table, policy=policy, persist=case is not None
            )
            if reconstruction
            else None
        )
        seconds["reconstruct"] = time.perf_counter() - t2
        caveats = result_caveats(loaded.caveats, blind_spots(con, table), rules, engine_result)
        if case is not None:
            _store(case, con, engine_result.findings, caveats)
    finally:
        if own_con:
            con.close()
        if scratch is not None:
            scratch.cleanup()
    shown = [f for f in engine_result.findings if f.severity >= min_severity]
    result = AnalysisResult(
        events_read=loaded.events_read,
        events_by_source=dict(loaded.events_by_source),
        skipped=dict(loaded.skipped),
        duplicates=loaded.duplicates,
        files=list(loaded.files),
        caveats=caveats,
        rules=rules,
        engine=engine_result,
        findings=shown,
        min_severity=min_severity,
        seconds=seconds,
        reconstruction=rec,
    )
    if case is not None:
        case.log_action("analysis_run", _custody_record(result, evidence))
    return result


def result_caveats(
    loaded: Sequence[Caveat], blind: Sequence[Caveat], rules: RuleSet, engine: EngineResult
) -> list[Caveat]:
    """Every caveat of a run, in report order: the readers', the audit policy's blind
    spots, rules not used, findings capped (shared by both engines)."""
    caveats = [*loaded, *blind]
    caveats += [
        Caveat(
            kind="rule-not-loaded",
            message=f"rule not used: {e.reason}",
            provenance=Provenance(source="file", parser="podmortem.audit.ruleset", artifact=e.path),
        )
        for e in rules.errors + engine.runtime_errors
    ]
    caveats += [
        Caveat(
            kind="findings-capped",
            message=f"rule {rid}: {n} more (actor, object) finding(s) not reported; the"
            f" first {MAX_FINDINGS_PER_RULE} are",
            provenance=Provenance(source="analysis", parser="podmortem.audit.engine"),
            details={"rule_id": rid, "not_reported": n},
        )
        for rid, n in engine.capped.items()
    ]
    return caveats


def load_inputs(
    con: duckdb.DuckDBPyConnection,
    inputs: Sequence[str | Path],
    *,
    table: str = TABLE,
    stdin: BinaryIO | None = None,
    keep_raw: bool = True,
) -> LoadResult:
    """The readers' ``load``, plus datasets written by ``audit export-parquet`` (a Parquet
    file, or a folder of only Parquet files, recognised by content). Datasets are loaded
    first, then every other input; deduplication keeps the first seen across both."""
    from podmortem.audit.model import create_table
    from podmortem.audit.parquet import load_parquet, parquet_dataset
    from podmortem.audit.sources import load

    datasets: list[list[Path]] = []
    rest: list[str | Path] = []
    for item in inputs:
        found = parquet_dataset(item)
        if found:
            datasets.append(found)
        else:
            rest.append(item)
    if not datasets:
        return load(con, inputs, table=table, stdin=stdin, keep_raw=keep_raw)
    create_table(con, table)
    by_source: dict[str, int] = {}
    files: list[str] = []
    for found in datasets:
        for k, n in load_parquet(con, found, table).items():
            by_source[k] = by_source.get(k, 0) + n
        files += [str(f) for f in found]
    rest_loaded = load(con, rest, table=table, stdin=stdin, keep_raw=keep_raw)
    for k, n in rest_loaded.events_by_source.items():
        by_source[k] = by_source.get(k, 0) + n
    return LoadResult(
        events_read=sum(by_source.values()),
        events_by_source=dict(sorted(by_source.items())),
        caveats=rest_loaded.caveats,
        skipped=rest_loaded.skipped,
        files=files + rest_loaded.files,
        duplicates=rest_loaded.duplicates,
    )


def _checked_limit(limit: str) -> str:
    if not _LIMIT.fullmatch(limit.strip()):
        raise InputError(f"memory limit {limit!r} is not a size such as 1GB or 512MB")
    return limit.strip()


def _into_case(
    case: Case, inputs: Sequence[str | Path], stdin: BinaryIO | None
) -> tuple[list[str | Path], list[dict[str, Any]]]:
    """Copy every input file into the case (write-once, hashed) and return the copies."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"
    copies: list[str | Path] = []
    records: list[dict[str, Any]] = []
    n = 0
    with case.batch():
        for item in inputs:
            text = str(item)
            sources: list[tuple[str, Path | None]] = []
            if text == "-":
                sources.append(("stdin", None))
            else:
                p = Path(text)
                if p.is_dir():
                    # Links inside evidence folders are not followed (the readers say so too).
                    sources += [
                        (str(f.relative_to(p)), f)
                        for f in sorted(p.rglob("*"))
                        if f.is_file() and not f.is_symlink()
                    ]
                elif p.is_file():
                    sources.append((p.name, p))
                elif not p.exists():
                    raise InputError(f"no such file or folder: {text}")
            for rel, src in sources:
                n += 1
                if n > MAX_CASE_INPUT_FILES:
                    raise InputError(f"more than {MAX_CASE_INPUT_FILES} input files")
                parts = [safe_component(x) for x in Path(rel).parts] or ["input"]
                name = f"audit/{stamp}/{n:05d}-" + "/".join(parts)
                if src is None:
                    stream = stdin if stdin is not None else sys.stdin.buffer
                    with case.artifact(name, source="file", command="audit analyze -") as w:
                        w.copy_from(stream)
                    rec = case.get(name)
                else:
                    rec = case.add_file(name, src, source="file", command=f"audit analyze {text}")
                copies.append(case.root / rec.path)
                records.append(
                    {
                        "input": text if src is None else str(src),
                        "artifact": rec.path,
                        "sha256": rec.sha256,
                        "size": rec.size,
                    }
                )
    return copies, records


def _store(
    case: Case, con: duckdb.DuckDBPyConnection, findings: list[Finding], caveats: list[Caveat]
) -> None:
    from podmortem.case.index import store_findings

    # Findings are recomputed over every audit event in the case: replace, don't append.
    con.execute("DELETE FROM findings WHERE analysis = ?", [ANALYSIS])
    store_findings(case, ANALYSIS, findings, caveats)


def _custody_record(result: AnalysisResult, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    by_sev: dict[str, int] = {}
    for f in result.engine.findings:
        by_sev[str(f.severity)] = by_sev.get(str(f.severity), 0) + 1
    return {
        "analysis": ANALYSIS,
        "inputs": evidence,
        "events_read": result.events_read,
        "events_by_source": result.events_by_source,
        "rules_loaded": {
            "builtin": result.rules.count("builtin"),
            "sigma": result.rules.count("sigma"),
            "custom": result.rules.count("custom"),
        },
        "rule_errors": [e.to_dict() for e in result.rules.errors],
        "findings": len(result.engine.findings),
        "findings_by_severity": by_sev,
        "suppressed_matches": sum(s.requests for s in result.suppressed),
        "caveats": len(result.caveats),
        "engine": {
            "duckdb": duckdb.__version__,
            "pySigma": _version("pySigma"),
        },
    }


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
