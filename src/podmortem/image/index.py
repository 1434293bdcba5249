"""The image analysis in the case index: findings and caveats through the shared tables,
plus ``image_layers`` and ``image_files`` (every version of every path, hidden ones
included) so that later capabilities can join on hashes and paths."""

from __future__ import annotations

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
        rows = [
            (
                cd,
                e.path,
                e.kind,
                e.layer,
                e.sha256,
                e.size,
                e.mode,
                e.uid,
                e.gid,
                e.link or None,
                e.hidden_by,
                e.hidden_how or None,
            )
            for e in a.versions
        ]
        # DuckDB's executemany is slow per row; a VALUES list in batches is much faster.
        batch = 2000
        for i in range(0, len(rows), batch):
            part = rows[i : i + batch]
            placeholders = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * len(part))
            con.execute(
                f"INSERT INTO image_files VALUES {placeholders}",  # noqa: S608 - placeholders only
                [v for row in part for v in row],
            )
    finally:
        con.close()
    return n
