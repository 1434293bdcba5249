"""The image analysis in the case index: findings and caveats through the shared tables,
plus ``image_layers`` and ``image_files`` (every version of every path, hidden ones
included) so that later capabilities can join on hashes and paths."""

from __future__ import annotations

from typing import Any

from podmortem.case import Case
from podmortem.case.index import connect, store_findings
from podmortem.image.analysis import Analysis
from podmortem.image.indicators import redact

ANALYSIS = "image"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_layers (
    config_digest VARCHAR, source VARCHAR, layer_index INTEGER, digest VARCHAR,
    diff_id VARCHAR, chain_id VARCHAR, created_by VARCHAR, added INTEGER, modified INTEGER,
    deleted INTEGER
);
CREATE TABLE IF NOT EXISTS image_files (
    config_digest VARCHAR, path VARCHAR, kind VARCHAR, layer_index INTEGER, sha256 VARCHAR,
    size BIGINT, mode INTEGER, uid BIGINT, gid BIGINT, link VARCHAR,
    hidden_by_layer INTEGER, hidden_how VARCHAR
);
"""


def store(case: Case, a: Analysis) -> int:
    n = store_findings(case, ANALYSIS, a.findings, a.caveats)
    con = connect(case)
    try:
        con.execute(_SCHEMA)
        cd = a.image.config_digest
        con.executemany(
            "INSERT INTO image_layers VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    cd,
                    a.image.source,
                    x.index,
                    x.computed_digest or x.digest,
                    x.effective_diff_id,
                    x.chain_id,
                    redact(x.created_by),
                    len(x.added),
                    len(x.modified),
                    len(x.deleted),
                )
                for x in a.layers
            ],
        )
        # Column-wise through list parameters and unnest: DuckDB's row-by-row inserts take
        # seconds for the ~7000 members of a small Debian image.
        vs = a.versions
        columns: list[tuple[str, list[Any]]] = [
            ("VARCHAR", [cd] * len(vs)),
            ("VARCHAR", [e.path for e in vs]),
            ("VARCHAR", [e.kind for e in vs]),
            ("INTEGER", [e.layer for e in vs]),
            ("VARCHAR", [e.sha256 for e in vs]),
            ("BIGINT", [e.size for e in vs]),
            ("INTEGER", [e.mode for e in vs]),
            ("BIGINT", [e.uid for e in vs]),
            ("BIGINT", [e.gid for e in vs]),
            ("VARCHAR", [e.link or None for e in vs]),
            ("INTEGER", [e.hidden_by for e in vs]),
            ("VARCHAR", [e.hidden_how or None for e in vs]),
        ]
        batch = 200_000
        for i in range(0, len(vs), batch):
            select = ", ".join(f"unnest(?::{t}[])" for t, _ in columns)
            con.execute(
                f"INSERT INTO image_files SELECT {select}",
                [values[i : i + batch] for _, values in columns],
            )
    finally:
        con.close()
    return n
