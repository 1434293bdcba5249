"""The case index: one embedded DuckDB file inside the case that capabilities use for
events, findings and the timeline. It is derived data (re-creatable from the artifacts),
so it is not hashed as evidence; every write to it is still logged in the custody log by
the analysis that made it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from podmortem.case.store import Case
from podmortem.findings import Caveat, Finding

_SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    analysis VARCHAR, rule_id VARCHAR, title VARCHAR, severity VARCHAR,
    techniques VARCHAR[], time TIMESTAMPTZ, subject VARCHAR, summary VARCHAR,
    evidence VARCHAR[], provenance JSON, extra JSON
);
CREATE TABLE IF NOT EXISTS caveats (
    analysis VARCHAR, kind VARCHAR, message VARCHAR, provenance JSON, details JSON
);
"""


def connect(case: Case, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    if not read_only and not case.index_path.exists():
        _create(case.index_path)
    con = duckdb.connect(str(case.index_path), read_only=read_only)
    if not read_only:
        con.execute(_SCHEMA)
    return con


def _create(path: Path) -> None:
    """Make a new index beside its place and rename it into place once DuckDB has written
    it whole. A process killed while DuckDB writes a new file's first blocks (the watch
    responder is SIGKILLed at any moment, and opens the index again when restarted) would
    otherwise leave a truncated file that DuckDB refuses to open ever after; now it leaves
    only the unfinished ``.new`` file, which the next creation replaces."""
    tmp = path.with_name(path.name + ".new")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        con.execute(_SCHEMA)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def store_findings(
    case: Case, analysis: str, findings: Iterable[Finding], caveats: Iterable[Caveat] = ()
) -> int:
    """Write findings and caveats of one analysis run; returns how many findings."""
    rows: list[tuple[Any, ...]] = [
        (
            analysis,
            f.rule_id,
            f.title,
            str(f.severity),
            list(f.techniques),
            f.time,
            f.subject,
            f.summary,
            list(f.evidence),
            json.dumps(f.provenance.to_dict() if f.provenance else None),
            json.dumps(dict(f.extra), default=str),
        )
        for f in findings
    ]
    cav_rows = [
        (
            analysis,
            c.kind,
            c.message,
            json.dumps(c.provenance.to_dict() if c.provenance else None),
            json.dumps(dict(c.details), default=str),
        )
        for c in caveats
    ]
    con = connect(case)
    try:
        if rows:
            con.executemany("INSERT INTO findings VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        if cav_rows:
            con.executemany("INSERT INTO caveats VALUES (?,?,?,?,?)", cav_rows)
    finally:
        con.close()
    return len(rows)


def load_findings(case: Case, analysis: str | None = None) -> list[Finding]:
    if not case.index_path.exists():
        return []
    con = connect(case, read_only=True)
    try:
        sql = (
            "SELECT rule_id, title, severity, techniques, time, subject, summary, evidence,"
            " provenance, extra FROM findings"
        )
        params: list[Any] = []
        if analysis is not None:
            sql += " WHERE analysis = ?"
            params.append(analysis)
        out = []
        for row in con.execute(sql, params).fetchall():
            prov = json.loads(row[8]) if row[8] else None
            out.append(
                Finding.from_dict(
                    {
                        "rule_id": row[0],
                        "title": row[1],
                        "severity": row[2],
                        "techniques": row[3] or [],
                        "time": row[4].isoformat() if row[4] else None,
                        "subject": row[5],
                        "summary": row[6],
                        "evidence": row[7] or [],
                        "provenance": prov,
                        "extra": json.loads(row[9]) if row[9] else {},
                    }
                )
            )
        return out
    finally:
        con.close()
