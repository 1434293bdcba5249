"""Pivots over a case's index: everything about one actor, one object, one credential.

Each pivot first narrows the events table to the rows it needs with a filter DuckDB can push
into its scan (one column compared with one value), deduplicates those rows into requests,
and only then does the work of the whole-log reconstruction on that small set. That is what
keeps a pivot under a second on a million events: the cost is one scan of one or two
columns, not of the table.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from podmortem.audit.fieldmap import sql_string
from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.blast import BlastRadius, blast_radius
from podmortem.audit.reconstruct.credentials import CredentialChain, follow
from podmortem.audit.reconstruct.identity import Actor, actors
from podmortem.audit.reconstruct.requests import (
    EXTRA_CREDENTIAL,
    ISSUED_CREDENTIAL,
    REQUESTS,
    check_table,
    first_distinct,
    fresh,
    json_value,
    object_label,
    outcome,
    select_requests,
)
from podmortem.audit.reconstruct.sessions import DEFAULT_GAP_S, Session, sessions
from podmortem.errors import InputError

PIVOT = "recon_pivot"
ACTOR_VIEW = "recon_pivot_actor"
CREDENTIALS = "recon_pivot_credentials"
# The requests of some credentials: presented (user.extra), issued (a TokenRequest's
# annotation), or, for logs without credential IDs, a service account by name.
_CREDENTIAL_WHERE_ANY = (
    f"({json_value('user_extra', EXTRA_CREDENTIAL)} IN (SELECT unnest(?::VARCHAR[]))"
    f" OR {json_value('annotations', ISSUED_CREDENTIAL)} IN (SELECT unnest(?::VARCHAR[]))"
    " OR coalesce(username, '') IN (SELECT unnest(?::VARCHAR[])))"
)
_CREDENTIAL_DERIVED_ANY = (
    "credential_id IN (SELECT unnest(?::VARCHAR[]))",
    "issued_credential IN (SELECT unnest(?::VARCHAR[]))",
    "actor IN (SELECT unnest(?::VARCHAR[]))",
)
DEFAULT_LIMIT = 200
MAX_CREDENTIALS = 20
MAX_ADDRESSES = 20
MAX_NAME = 1024


@dataclass(frozen=True, slots=True)
class Request:
    """One request in a pivot's timeline."""

    time: str | None
    audit_id: str
    actor: str
    actor_class: str
    client_ip: str | None
    user_agent: str | None
    verb: str | None
    object: str
    outcome: str
    response_code: int | None
    command: list[str] | None
    credential_id: str | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "audit_id": self.audit_id,
            "actor": self.actor,
            "actor_class": self.actor_class,
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
            "verb": self.verb,
            "object": self.object,
            "outcome": self.outcome,
            "response_code": self.response_code,
            "command": self.command,
            "credential_id": self.credential_id,
            "source": self.source,
        }


@dataclass(slots=True)
class PivotResult:
    kind: str  # actor | object | credential
    query: str
    requests_total: int = 0
    timeline: list[Request] = field(default_factory=list)
    # How the timeline was cut: ``limit`` first and ``limit`` last requests plus up to
    # ``limit`` notable ones (None: every request); the rest is counted, never dropped
    # silently, and ``summary`` aggregates all of them.
    limit: int | None = DEFAULT_LIMIT
    notable_total: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    actors: list[Actor] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    sessions_total: int = 0
    credentials: list[CredentialChain] = field(default_factory=list)
    blast: list[BlastRadius] = field(default_factory=list)
    readers_by_list: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pivot": self.kind,
            "query": self.query,
            "requests_total": self.requests_total,
            "timeline": [r.to_dict() for r in self.timeline],
            "timeline_shown": len(self.timeline),
            "timeline_omitted": max(0, self.requests_total - len(self.timeline)),
            "timeline_limit": self.limit,
            "notable_total": self.notable_total,
            "summary": self.summary,
            "actors": [a.to_dict() for a in self.actors],
            "sessions": [s.to_dict() for s in self.sessions],
            "sessions_total": self.sessions_total,
            "credentials": [c.to_dict() for c in self.credentials],
            "blast_radius": [b.to_dict() for b in self.blast],
            "readers_by_list": self.readers_by_list,
            "seconds": round(self.seconds, 4),
        }


def _narrow(
    con: duckdb.DuckDBPyConnection,
    table: str,
    where: tuple[str, list[object]],
    derived: list[tuple[str, list[object]]],
    into: str = PIVOT,
) -> int:
    """Copy the pivot's requests into a small temporary table. ``where`` filters the events
    table; ``derived`` (alternatives, any of which selects a request) filters the persisted
    request table (same answer, no JSON to parse, no deduplication), used when it was built
    from exactly these events.

    The persisted table is read in two steps: the row ids that match, from the one or two
    columns the filter needs, then whole rows for those ids only. Selecting whole rows with
    the filter directly makes DuckDB read every column of every row group the filter
    cannot skip (0.45 s instead of 0.07 s on a million requests)."""
    _check_table(con, table)
    if fresh(con, table):
        ids = " UNION ".join(f"SELECT rowid FROM main.{REQUESTS} WHERE {w}" for w, _ in derived)
        sql = f"SELECT {_KEPT} FROM main.{REQUESTS} WHERE rowid IN ({ids})"
        params = [p for _, ps in derived for p in ps]
    else:
        sql, params = f"SELECT {_KEPT} FROM ({select_requests(table, where[0])})", where[1]
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {sql}", params)
    row = con.execute(f"SELECT count(*) FROM {into}").fetchone()
    return int(row[0]) if row else 0


# The columns no pivot step reads are not copied (a busy subject has 176k requests).
_KEPT = "* EXCLUDE (received, source_ips, stage, level, obj_api_group)"


def _actor_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    where: tuple[str, list[object]],
    derived: list[tuple[str, list[object]]],
    literal: str,
) -> tuple[str, int]:
    """The actor's requests as a relation: a view on the persisted request table when it is
    fresh, a copy otherwise. Through the view each step reads only the columns it needs;
    copying a busy controller's 176k whole rows first costs more than all the steps
    together. A view cannot take a bound parameter: ``literal`` is the actor filter with
    the name as a quoted literal."""
    _check_table(con, table)
    if not fresh(con, table):
        return PIVOT, _narrow(con, table, where, derived)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {ACTOR_VIEW} AS"
        f" SELECT {_KEPT} FROM main.{REQUESTS} WHERE {literal}"
    )
    row = con.execute(f"SELECT count(*) FROM {ACTOR_VIEW}").fetchone()
    return ACTOR_VIEW, int(row[0]) if row else 0


def _check_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    check_table(table)
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        " AND table_name = ?",
        [table],
    ).fetchone()
    if not found or not found[0]:
        raise InputError(
            f"no {table} table in this index: load audit logs first"
            " (podmortem audit analyze --case)"
        )


# A request an investigator must see even in a busy subject's timeline: refused or failed,
# anything but a read, a shell (exec/attach/port-forward), or a secret.
_NOTABLE = (
    "(coalesce(response_code, 0) >= 400 OR coalesce(verb, '') NOT IN ('get', 'list', 'watch')"
    " OR obj_subresource IN ('exec', 'attach', 'portforward') OR obj_resource = 'secrets')"
)
_TIMELINE_COLUMNS = f"""ts, rid, actor, actor_class, client_ip, user_agent, verb, {object_label()},
    {outcome()}, response_code, exec_command, credential_id,
    coalesce(source_file, '?') || ':' || coalesce(CAST(source_line AS VARCHAR), '?')"""


def _timeline(
    con: duckdb.DuckDBPyConnection, limit: int | None, rel: str = PIVOT
) -> tuple[list[Request], int]:
    """The first and last ``limit`` requests and up to ``limit`` notable ones, in time
    order (all of them when ``limit`` is None), and how many requests are notable. Three
    top-N queries: no sort of a busy subject's every request."""
    notable_row = con.execute(f"SELECT count(*) FROM {rel} WHERE {_NOTABLE}").fetchone()
    notable = int(notable_row[0]) if notable_row else 0
    if limit is None:
        sql, params = f"SELECT {_TIMELINE_COLUMNS} FROM {rel} ORDER BY ts, rid", []
    else:
        n = max(0, int(limit))
        sql = f"""
        WITH pick AS (
            (SELECT row_id FROM {rel} ORDER BY ts, rid LIMIT ?)
            UNION (SELECT row_id FROM {rel} ORDER BY ts DESC, rid DESC LIMIT ?)
            UNION (SELECT row_id FROM {rel} WHERE {_NOTABLE} ORDER BY ts, rid LIMIT ?)
        )
        SELECT {_TIMELINE_COLUMNS} FROM {rel} WHERE row_id IN (SELECT row_id FROM pick)
        ORDER BY ts, rid
        """
        params = [n, n, n]
    rows = con.execute(sql, params).fetchall()
    return [
        Request(
            time=r[0].isoformat() if r[0] else None,
            audit_id=str(r[1]),
            actor=str(r[2]),
            actor_class=str(r[3]),
            client_ip=r[4],
            user_agent=r[5],
            verb=r[6],
            object=str(r[7]),
            outcome=str(r[8]),
            response_code=r[9],
            command=[str(c) for c in r[10]] if r[10] else None,
            credential_id=r[11],
            source=str(r[12]),
        )
        for r in rows
    ], notable


def _summary(con: duckdb.DuckDBPyConnection, rel: str = PIVOT) -> dict[str, Any]:
    """Every request of the pivot, aggregated in one pass: what the cut timeline leaves out
    is still counted here (by verb, resource, outcome, address, user agent)."""
    row = con.execute(
        f"""
        SELECT min(ts), max(ts), histogram(verb), histogram(obj_resource), histogram({outcome()}),
               histogram(client_ip), count(DISTINCT client_ip),
               {first_distinct("user_agent", 50)},
               count(DISTINCT user_agent), count(DISTINCT credential_id),
               {first_distinct("credential_id", 50)}
        FROM {rel}
        """
    ).fetchone()
    if row is None or row[0] is None:
        return {}

    def top(h: dict[Any, Any] | None, k: int = 50) -> dict[str, int]:
        items = sorted(
            ((str(a), int(b)) for a, b in (h or {}).items() if a is not None),
            key=lambda x: (-x[1], x[0]),
        )
        return dict(items[:k])

    return {
        "first": row[0].isoformat(),
        "last": row[1].isoformat() if row[1] else None,
        "verbs": top(row[2]),
        "resources": top(row[3]),
        "outcomes": top(row[4]),
        "client_ips": top(row[5]),
        "client_ip_count": int(row[6]),
        "user_agents": sorted(str(x) for x in row[7] or []),
        "user_agent_count": int(row[8]),
        "credential_count": int(row[9]),
        "credentials": sorted(str(x) for x in row[10] or []),
    }


def _name(value: str, what: str) -> str:
    if len(value) > MAX_NAME:
        raise InputError(f"{what} longer than {MAX_NAME} characters")
    if "\x00" in value:
        raise InputError(f"NUL character in the {what}")
    return value


def actor(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    table: str = TABLE,
    limit: int | None = DEFAULT_LIMIT,
    gap_s: int = DEFAULT_GAP_S,
) -> PivotResult:
    """Who NAME is, every session, each credential presented and followed, what it reached."""
    import time

    t0 = time.perf_counter()
    name = _name(name, "actor name")
    # Anonymous requests carry no username at all on some providers: '' and
    # system:anonymous are the same actor to an investigator.
    if name in ("", "system:anonymous"):
        where: tuple[str, list[object]] = (
            "(username IS NULL OR username IN ('', 'system:anonymous'))",
            [],
        )
        derived: list[tuple[str, list[object]]] = [("actor IN ('', 'system:anonymous')", [])]
        literal = "actor IN ('', 'system:anonymous')"
    else:
        where, derived = ("username = ?", [name]), [("actor = ?", [name])]
        literal = f"actor = {sql_string(name)}"
    res = PivotResult("actor", name)
    rel, res.requests_total = _actor_rows(con, table, where, derived, literal)
    res.limit = limit
    res.timeline, res.notable_total = _timeline(con, limit, rel)
    res.summary = _summary(con, rel)
    res.actors, _ = actors(con, table, rel)
    res.sessions, res.sessions_total = sessions(con, rel, where="TRUE", params=[], gap_s=gap_s)
    creds = [
        str(r[0])
        for r in con.execute(
            f"SELECT credential_id FROM {rel} WHERE credential_id IS NOT NULL "
            f"GROUP BY 1 ORDER BY min(ts) LIMIT {MAX_CREDENTIALS}"
        ).fetchall()
    ]
    wanted = creds or ([name] if name.startswith("system:serviceaccount:") else [])
    if wanted:
        _narrow(
            con,
            table,
            (_CREDENTIAL_WHERE_ANY, [wanted] * 3),
            [(w, [wanted]) for w in _CREDENTIAL_DERIVED_ANY],
            into=CREDENTIALS,
        )
        res.credentials = follow(con, table, CREDENTIALS, only=wanted)
    keys = [
        (str(r[0]), r[1])
        for r in con.execute(
            f"SELECT actor, client_ip FROM {rel} GROUP BY ALL ORDER BY count(*) DESC "
            f"LIMIT {MAX_ADDRESSES}"
        ).fetchall()
    ]
    res.blast = blast_radius(con, keys, table, rel)
    res.seconds = time.perf_counter() - t0
    return res


def parse_object(spec: str) -> tuple[str | None, str, str]:
    """``NAMESPACE/RESOURCE/NAME``, or ``RESOURCE/NAME`` / ``-/RESOURCE/NAME`` for a
    cluster-scoped object (nodes, clusterrolebindings, namespaces)."""
    parts = _name(spec, "object").strip("/").split("/")
    if len(parts) == 3:
        ns, resource, name = parts
        return (None if ns in ("-", "") else ns), resource, name
    if len(parts) == 2:
        return None, parts[0], parts[1]
    raise InputError(f"object must be NAMESPACE/RESOURCE/NAME or RESOURCE/NAME, not {spec[:200]!r}")


def object_(
    con: duckdb.DuckDBPyConnection,
    spec: str,
    *,
    table: str = TABLE,
    limit: int | None = DEFAULT_LIMIT,
) -> PivotResult:
    """Every request on the object (any subresource), who made them, and the list/watch
    requests that could have returned it without naming it."""
    import time

    t0 = time.perf_counter()
    ns, resource, name = parse_object(spec)
    res = PivotResult("object", spec)
    same = "obj_resource = ? AND obj_name = ? AND obj_namespace IS NOT DISTINCT FROM ?"
    res.requests_total = _narrow(
        con, table, (same, [resource, name, ns]), [(same, [resource, name, ns])]
    )
    res.limit = limit
    res.timeline, res.notable_total = _timeline(con, limit)
    res.summary = _summary(con)
    res.actors, _ = actors(con, table, PIVOT)
    rows = con.execute(
        f"""
        SELECT coalesce(username, '') AS actor, verb, coalesce(obj_namespace, '*') AS scope,
               count(DISTINCT coalesce(audit_id, event_key)),
               min({_ts()}), max({_ts()})
        FROM "{table}"
        WHERE obj_resource = ? AND obj_name IS NULL AND verb IN ('list', 'watch')
          AND (obj_namespace IS NULL OR obj_namespace IS NOT DISTINCT FROM ?)
          AND coalesce(response_code, 0) < 400
        GROUP BY ALL ORDER BY 5 LIMIT 500
        """,
        [resource, ns],
    ).fetchall()
    res.readers_by_list = [
        {
            "actor": str(r[0]),
            "verb": r[1],
            "scope": r[2],
            "requests": int(r[3]),
            "first": r[4].isoformat() if r[4] else None,
            "last": r[5].isoformat() if r[5] else None,
        }
        for r in rows
    ]
    res.seconds = time.perf_counter() - t0
    return res


def _ts() -> str:
    return "coalesce(request_received, stage_timestamp)"


def credential(
    con: duckdb.DuckDBPyConnection,
    cid: str,
    *,
    table: str = TABLE,
    limit: int | None = DEFAULT_LIMIT,
) -> PivotResult:
    """The credential's issuance, every use by anyone, and whether each use came from where
    the credential is bound. ``cid`` is a KEP-4193 ID (``JTI=...``, ``X509SHA256=...``) or,
    for logs without IDs, a service-account username."""
    import time

    t0 = time.perf_counter()
    cid = _name(cid.strip(), "credential ID")
    if not cid:
        raise InputError("empty credential ID")
    res = PivotResult("credential", cid)
    base = (
        "(contains(CAST(user_extra AS VARCHAR), ?)"
        " OR contains(CAST(annotations AS VARCHAR), ?) OR coalesce(username, '') = ?"
    )
    base_params: list[object] = [cid, cid, cid]
    derived: list[tuple[str, list[object]]] = [
        ("credential_id = ?", [cid]),
        ("issued_credential = ?", [cid]),
        ("actor = ?", [cid]),
    ]
    if cid.startswith("system:serviceaccount:") and cid.count(":") == 3:
        # Followed by name (no credential IDs in the log): its TokenRequests are made by
        # someone else (the kubelet) on serviceaccounts/<name>/token.
        ns, sa = cid.split(":")[2:]
        issuance_sql = (
            "(obj_resource = 'serviceaccounts' AND obj_subresource = 'token'"
            " AND obj_namespace = ? AND obj_name = ?)"
        )
        base += f" OR {issuance_sql}"
        base_params += [ns, sa]
        derived.append((issuance_sql, [ns, sa]))
    res.requests_total = _narrow(con, table, (base + ")", base_params), derived)
    res.credentials = follow(con, table, PIVOT, only=cid)
    res.limit = limit
    res.timeline, res.notable_total = _timeline(con, limit)
    res.summary = _summary(con)
    res.seconds = time.perf_counter() - t0
    return res
