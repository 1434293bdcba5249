"""The audit rules of ``audit analyze``, run chunk by chunk.

Each chunk is loaded by the same readers into an in-memory ``watch_batch`` table and the
engine runs the detection rules over it. Events that hit a rule are kept in a sliding window
(``watch_window``, by event time, as long as the longest correlation's timespan plus slack);
the correlation rules run over that window with the engine's own SQL, so a burst spread over
several chunks is still seen. Everything that must survive a restart (the window's hits, the
findings, the responses decided for them) is also written to the watch database ``st``
in one transaction per chunk; the in-memory window is rebuilt from it at start.

A finding is identified by what it is about, not by chunk boundaries: rule + actor + object
(for correlations: rule + group), plus the time its episode began. A later chunk that
matches the same rule, actor and object within ``reopen_after`` of the episode's last event
updates the finding instead of making a new one, so a replayed or merely longer story is one
finding with one response.
"""

# ruff: noqa: S608 -- table names are ours; values are bound as parameters.
from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.correlate import run_correlation
from podmortem.audit.engine import HITS, run
from podmortem.audit.model import COLUMNS, add_missing_columns, create_table
from podmortem.audit.ruleset import RuleSet
from podmortem.audit.sources import load
from podmortem.findings import Caveat, Finding

BATCH = "watch_batch"
WINDOW = "watch_window"
CORR_HITS = "watch_corr_hits"
WINDOW_SLACK_S = 60.0
MIN_WINDOW_S = 300.0
# Rule hits kept for correlations: bounded even when a noisy rule hits everything inside
# the window (the oldest go first, and the chunk says so).
MAX_WINDOW_ROWS = 1_000_000
# The dedup identity of an event: auditID + stage (the loader's own key); events without an
# auditID fall back to a digest of the fields that make them what they are.
IDENT_SQL = (
    "coalesce(audit_id || '|' || coalesce(stage, ''), md5(concat_ws('|', provider, stage,"
    " CAST(stage_timestamp AS VARCHAR), username, verb, request_uri, obj_resource,"
    " obj_namespace, obj_name)))"
)
_POD_OBJECT = re.compile(
    r"^pods(?:/[a-z]+)? ([a-z0-9][-a-z0-9.]{0,252})/([a-z0-9][-a-z0-9.]{0,252})$"
)


@dataclass(frozen=True, slots=True)
class WatchFinding:
    """A finding as watch mode keeps it: with a stable id and the pod it names, if any."""

    finding_id: str
    finding: Finding
    pod: tuple[str, str] | None  # (namespace, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "finding_id": self.finding_id,
            "pod": "/".join(self.pod) if self.pod else None,
            **self.finding.to_dict(),
        }


@dataclass(slots=True)
class ChunkResult:
    events: int = 0
    duplicate_events: int = 0  # hits already handled before (a replayed chunk)
    hits: int = 0
    new_findings: list[WatchFinding] = field(default_factory=list)
    updated_findings: int = 0
    caveats: list[Caveat] = field(default_factory=list)
    window_rows: int = 0


def pod_of(finding: Finding) -> tuple[str, str] | None:
    """The pod a finding names (``pods[/subresource] namespace/name``), if it names one."""
    m = _POD_OBJECT.match(str(finding.extra.get("object", "")))
    return (m.group(1), m.group(2)) if m else None


def finding_key(f: Finding) -> str:
    return "\x1f".join(
        (f.rule_id, str(f.extra.get("actor", f.subject)), str(f.extra.get("object", "")))
    )


def finding_id(key: str, first_seen: datetime | None) -> str:
    stamp = first_seen.isoformat() if first_seen else ""
    return hashlib.sha256(f"{key}\x1e{stamp}".encode()).hexdigest()[:24]


class IncrementalDetector:
    """Runs a rule set over successive chunks; durable state lives in schema ``st``."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        rules: RuleSet,
        *,
        policy: ActorPolicy | None = None,
        reopen_after: timedelta = timedelta(hours=1),
        scratch: Path | None = None,
    ) -> None:
        self.con = con
        self.rules = rules
        self.policy = policy or ActorPolicy.default_policy()
        self.reopen_after = reopen_after
        self.detections = rules.detections
        self._index = {r.key: i for i, r in enumerate(self.detections)}
        self._batch_rules = RuleSet(rules=list(self.detections))
        spans = [r.correlation.timespan_s for r in rules.correlations if r.correlation]
        self.window_s = max([MIN_WINDOW_S, *spans]) + WINDOW_SLACK_S
        self._scratch = scratch or Path(tempfile.mkdtemp(prefix="podmortem-watch-"))
        self._create()

    # ------------------------------------------------------------------- schema

    def _create(self) -> None:
        con = self.con
        cols = ", ".join(f'"{c}" {t}' for c, t, _ in COLUMNS)
        con.execute(f"CREATE TABLE IF NOT EXISTS st.{WINDOW} ({cols}, ident VARCHAR)")
        # A state written by an earlier version lacks the columns added since (log_name):
        # add them; rows move between the window tables by name, never by position.
        add_missing_columns(con, WINDOW, database="st")
        con.execute(
            "CREATE TABLE IF NOT EXISTS st.watch_window_hits (ident VARCHAR, rule_key VARCHAR)"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS st.watch_findings (finding_id VARCHAR, fkey VARCHAR,"
            " rule_id VARCHAR, severity INTEGER, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,"
            " requests BIGINT, pod VARCHAR, finding JSON, recorded_at TIMESTAMPTZ)"
        )
        # The latest episode of every finding key: (finding id, last event time).
        self._episodes: dict[str, tuple[str, datetime | None]] = {
            str(k): (str(fid), last)
            for k, fid, last in con.execute(
                "SELECT fkey, arg_max(finding_id, recorded_at), max(last_seen)"
                " FROM st.watch_findings GROUP BY fkey"
            ).fetchall()
        }
        # The in-memory window, rebuilt from the durable one.
        con.execute(f"CREATE OR REPLACE TABLE {WINDOW} AS SELECT * FROM st.{WINDOW}")
        con.execute(
            "CREATE OR REPLACE TABLE watch_window_hits AS SELECT * FROM st.watch_window_hits"
        )

    # --------------------------------------------------------------------- run

    def process(self, data: bytes, *, source: str, offset: int | None = None) -> ChunkResult:
        """Detect over one chunk. Writes only the in-memory tables; :meth:`persist` (inside
        the caller's transaction on ``st``) makes the result durable."""
        res = ChunkResult()
        con = self.con
        con.execute(f"DROP TABLE IF EXISTS {BATCH}")
        create_table(con, BATCH)
        if data:
            path = self._scratch / "chunk.jsonl"
            path.write_bytes(data)
            # the original record only if a rule searches it (Sigma keywords read raw)
            loaded = load(con, [path], table=BATCH, keep_raw=self.rules.reads_raw)
            res.events = loaded.events_read
            res.caveats += loaded.caveats
        con.execute(f"ALTER TABLE {BATCH} ADD COLUMN ident VARCHAR")
        # Provenance: the chunk's scratch file means nothing later; name the source instead.
        where = f"{source}@{offset}" if offset is not None else source
        con.execute(f"UPDATE {BATCH} SET ident = {IDENT_SQL}, source_file = ?", [where])
        con.execute("CREATE OR REPLACE TEMP TABLE watch_new_hits (ident VARCHAR, rule_key VARCHAR)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE watch_new_rows AS SELECT * FROM {BATCH} LIMIT 0")
        if res.events == 0:
            return res
        # Events whose hits are already recorded were handled before a restart: drop them
        # before the rules see them (a replay must not count twice).
        before = self._count(BATCH)
        con.execute(f"DELETE FROM {BATCH} WHERE ident IN (SELECT ident FROM watch_window_hits)")
        res.duplicate_events = before - self._count(BATCH)
        engine = run(con, self._batch_rules, table=BATCH, policy=self.policy)
        res.caveats += [
            Caveat("rule-runtime-error", f"rule not used: {e.reason}", None)
            for e in engine.runtime_errors
        ]
        keys = [r.key for r in self.detections]
        con.execute("CREATE OR REPLACE TEMP TABLE watch_rule_keys (r INTEGER, rule_key VARCHAR)")
        con.executemany("INSERT INTO watch_rule_keys VALUES (?, ?)", list(enumerate(keys)))
        con.execute(
            f"INSERT INTO watch_new_hits SELECT DISTINCT b.ident, k.rule_key FROM {HITS} h"
            f" JOIN {BATCH} b ON b.rowid = h.row_id JOIN watch_rule_keys k ON k.r = h.r"
        )
        con.execute(
            f"INSERT INTO watch_new_rows SELECT * FROM {BATCH} WHERE rowid IN"
            f" (SELECT row_id FROM {HITS}) QUALIFY row_number() OVER (PARTITION BY ident) = 1"
        )
        res.hits = self._count("watch_new_hits")
        con.execute(f"INSERT INTO {WINDOW} BY NAME SELECT * FROM watch_new_rows")
        con.execute("INSERT INTO watch_window_hits SELECT * FROM watch_new_hits")
        found = list(engine.findings)
        found += self._correlate()
        self._merge(found, res)
        self._capped = 0
        self._expire()
        if self._capped:
            res.caveats.append(
                Caveat(
                    "watch-window-capped",
                    f"the correlation window held more than {MAX_WINDOW_ROWS} rule hits; the"
                    f" oldest {self._capped} were dropped before their time",
                    None,
                )
            )
        res.window_rows = self._count(WINDOW)
        return res

    def _correlate(self) -> list[Finding]:
        """The correlation rules over the window, when the chunk fed any of their inputs."""
        con = self.con
        fed = {
            str(r[0])
            for r in con.execute("SELECT DISTINCT rule_key FROM watch_new_hits").fetchall()
        }
        wanted = [
            c for c in self.rules.correlations if c.correlation and fed & set(c.correlation.rules)
        ]
        if not wanted:
            return []
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {CORR_HITS} AS SELECT k.r, w.rowid AS row_id"
            f" FROM {WINDOW} w JOIN watch_window_hits h USING (ident)"
            " JOIN watch_rule_keys k ON k.rule_key = h.rule_key"
        )
        out: list[Finding] = []
        for corr in wanted:
            spec = corr.correlation
            ids = [self._index[k] for k in spec.rules if k in self._index] if spec else []
            found, _ = run_correlation(
                con, corr, rule_indexes=ids, table=WINDOW, hits=CORR_HITS, policy=self.policy
            )
            out += found
        return out

    def _merge(self, found: Sequence[Finding], res: ChunkResult) -> None:
        """New episode -> new finding; same rule/actor/object soon after -> an update."""
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE watch_findings_new AS"
            " SELECT * FROM st.watch_findings LIMIT 0"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE watch_findings_upd"
            " (finding_id VARCHAR, last_seen TIMESTAMPTZ, requests BIGINT)"
        )
        new_rows: list[list[Any]] = []
        updates: list[list[Any]] = []
        for f in found:
            key = finding_key(f)
            first = _ts(f.extra.get("first_seen")) or f.time
            last = _ts(f.extra.get("last_seen")) or first
            requests = int(f.extra.get("requests", 1) or 1)
            is_corr = "correlation" in f.extra
            prev = self._episodes.get(key)
            if prev is not None and (
                first is None or prev[1] is None or first <= prev[1] + self.reopen_after
            ):
                # Detection updates add requests (stored negated); correlations give a peak.
                updates.append([prev[0], last, requests if is_corr else -requests])
                self._episodes[key] = (prev[0], max(prev[1], last) if prev[1] and last else last)
                res.updated_findings += 1
                continue
            fid = finding_id(key, first)
            pod = pod_of(f)
            self._episodes[key] = (fid, last)
            new_rows.append(
                [
                    fid,
                    key,
                    f.rule_id,
                    int(f.severity),
                    first,
                    last,
                    requests,
                    "/".join(pod) if pod else None,
                    json.dumps(f.to_dict(), default=str),
                ]
            )
            res.new_findings.append(WatchFinding(fid, f, pod))
        if new_rows:
            con.executemany(
                "INSERT INTO watch_findings_new VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())", new_rows
            )
        if updates:
            con.executemany("INSERT INTO watch_findings_upd VALUES (?, ?, ?)", updates)

    def _expire(self) -> None:
        con = self.con
        row = con.execute(
            f"SELECT max(coalesce(stage_timestamp, request_received)) FROM {WINDOW}"
        ).fetchone()
        if not row or row[0] is None:
            return
        self._horizon = row[0] - timedelta(seconds=self.window_s)
        con.execute(
            f"DELETE FROM {WINDOW} WHERE coalesce(stage_timestamp, request_received) < ?",
            [self._horizon],
        )
        over = self._count(WINDOW) - MAX_WINDOW_ROWS
        if over > 0:
            cut = con.execute(
                f"SELECT coalesce(stage_timestamp, request_received) AS t FROM {WINDOW}"
                " ORDER BY t NULLS FIRST LIMIT 1 OFFSET ?",
                [over],
            ).fetchone()
            if cut is not None and cut[0] is not None:
                self._horizon = max(self._horizon, cut[0])
                con.execute(
                    f"DELETE FROM {WINDOW} WHERE coalesce(stage_timestamp, request_received) < ?",
                    [self._horizon],
                )
                self._capped = over
        con.execute(
            f"DELETE FROM watch_window_hits WHERE ident NOT IN (SELECT ident FROM {WINDOW})"
        )

    def persist(self) -> None:
        """Write the chunk's outcome to ``st`` (call inside the caller's transaction)."""
        con = self.con
        con.execute(f"INSERT INTO st.{WINDOW} BY NAME SELECT * FROM watch_new_rows")
        con.execute("INSERT INTO st.watch_window_hits SELECT * FROM watch_new_hits")
        con.execute("INSERT INTO st.watch_findings SELECT * FROM watch_findings_new")
        # Detection updates add requests (stored negated); correlation updates give the peak.
        con.execute(
            "UPDATE st.watch_findings f SET last_seen = greatest(f.last_seen, u.last_seen),"
            " requests = CASE WHEN u.requests < 0 THEN f.requests - u.requests"
            " ELSE greatest(f.requests, u.requests) END"
            " FROM (SELECT finding_id, max(last_seen) AS last_seen, sum(requests) AS requests"
            "       FROM watch_findings_upd GROUP BY finding_id) u"
            " WHERE f.finding_id = u.finding_id"
        )
        horizon = getattr(self, "_horizon", None)
        if horizon is not None:
            con.execute(
                f"DELETE FROM st.{WINDOW} WHERE coalesce(stage_timestamp, request_received) < ?",
                [horizon],
            )
            con.execute(
                "DELETE FROM st.watch_window_hits WHERE ident NOT IN"
                f" (SELECT ident FROM st.{WINDOW})"
            )

    def _count(self, table: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


def _ts(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
