"""One row per API request, with the derived columns every reconstruction step needs.

A request can appear up to three times in a log (one event per stage). Reconstruction
counts requests, not events: the ResponseComplete event is kept, except for exec, attach,
port-forward and watch, whose ResponseStarted event says when the session began (their
ResponseComplete comes when it ends). Each request has the time it was received (``ts``);
the table itself has no order: every reader that needs one says ``ORDER BY``.

Derived columns:

- ``client_ip``: the address the request came from. All but the last of ``sourceIPs`` are
  set by the client (X-Forwarded-For), so the last is used; on AKS a proxy inside the
  managed control plane appends itself, so there the one before it is used.
- ``credential_id``: ``user.extra["authentication.kubernetes.io/credential-id"]`` (KEP-4193:
  ``JTI=<uuid>`` for service-account tokens, ``X509SHA256=<hex>`` for client certificates).
- ``bound_pod`` / ``bound_node``: the pod and node a token is bound to (``pod-name``,
  ``node-name`` in ``user.extra``).
- ``issued_credential``: the ``authentication.kubernetes.io/issued-credential-id``
  annotation of a TokenRequest.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

import re

import duckdb

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.fieldmap import sql_string
from podmortem.audit.model import COLUMN_NAMES, TABLE
from podmortem.errors import InputError

REQUESTS = "recon_requests"
META = "recon_meta"
META_VERSION = 1  # bump when the request table's columns change
EXTRA_CREDENTIAL = "authentication.kubernetes.io/credential-id"
EXTRA_POD = "authentication.kubernetes.io/pod-name"
EXTRA_NODE = "authentication.kubernetes.io/node-name"
ISSUED_CREDENTIAL = "authentication.kubernetes.io/issued-credential-id"
STREAMING_SUBRESOURCES = ("exec", "attach", "portforward")
READ_VERBS = ("get", "list", "watch")
_EXTRA_KEYS = (EXTRA_CREDENTIAL, EXTRA_POD, EXTRA_NODE)  # ex[1], ex[2], ex[3] below
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def json_value(column: str, key: str) -> str:
    """First string value of ``column[key]``, whether stored as a list (``user.extra``) or a
    plain string (annotations); NULL for anything else (hostile input may put an object)."""
    path = sql_string(f"$.{_q(key)}")
    first = sql_string(f"$.{_q(key)}[0]")
    return (
        f"(CASE json_type({column}, {path}) "
        f"WHEN 'ARRAY' THEN json_extract_string({column}, {first}) "
        f"WHEN 'VARCHAR' THEN json_extract_string({column}, {path}) END)"
    )


def json_keys(column: str, keys: tuple[str, ...] | list[str]) -> str:
    """``column[key]`` for each key, a list from one parse of the document; read each
    element with :func:`first_string` (as :func:`json_value` reads one key, parsing twice)."""
    paths = ", ".join(sql_string(f"$.{_q(k)}") for k in keys)
    return f"json_extract({column}, [{paths}])"


def first_string(value: str) -> str:
    """First string of an extracted JSON value: a list's first element or a plain string."""
    return (
        f"(CASE json_type({value}) WHEN 'ARRAY' THEN json_extract_string({value}, '$[0]') "
        f"WHEN 'VARCHAR' THEN json_extract_string({value}, '$') END)"
    )


def first_distinct(value: str, limit: int | str, where: str | None = None) -> str:
    """The first ``limit`` distinct non-NULL values of ``value`` in a group, in sort order
    (``where``: only rows where it holds). Sorted so that a capped list is the same on every
    run: without an order DuckDB's parallel aggregation returns a different subset each
    time, and a report must read the same twice."""
    cond = f"({value}) IS NOT NULL" + (f" AND ({where})" if where else "")
    return f"list_slice(list(DISTINCT {value} ORDER BY {value}) FILTER ({cond}), 1, {limit})"


def _q(key: str) -> str:
    return '"' + key.replace('"', "") + '"'


def client_ip(alias: str = "") -> str:
    a = alias
    return (
        f"(CASE WHEN {a}provider = 'aks' AND len({a}source_ips) > 1 "
        f"THEN {a}source_ips[len({a}source_ips) - 1] "
        f"ELSE {a}source_ips[len({a}source_ips)] END)"
    )


def event_time(alias: str = "") -> str:
    return f"coalesce({alias}request_received, {alias}stage_timestamp)"


def stage_rank(alias: str = "") -> str:
    a = alias
    streaming = ", ".join(sql_string(s) for s in STREAMING_SUBRESOURCES)
    return (
        f"(CASE WHEN {a}obj_subresource IN ({streaming}) OR {a}verb = 'watch' THEN "
        f"(CASE {a}stage WHEN 'ResponseStarted' THEN 0 WHEN 'ResponseComplete' THEN 1 "
        f"WHEN 'Panic' THEN 2 ELSE 3 END) ELSE "
        f"(CASE {a}stage WHEN 'ResponseComplete' THEN 0 WHEN 'ResponseStarted' THEN 1 "
        f"WHEN 'Panic' THEN 2 ELSE 3 END) END)"
    )


def select_requests(
    table: str = TABLE, where: str = "TRUE", policy: ActorPolicy | None = None
) -> str:
    """SQL for one row per request among the events matching ``where``.

    ``where`` must only test columns that are the same in every stage of a request (user,
    verb, object, source), so that filtering before deduplication gives the same requests
    as filtering after; pivots rely on this to touch only the rows they need.
    """
    policy = policy or ActorPolicy.default_policy()
    # Deduplicate first, on a narrow relation: which event of each request to keep (the
    # best-ranked stage, then the earliest, then the first read) is one hash aggregate over
    # four columns; only the kept rows are then read whole. (A window over a million
    # one-row partitions was the slowest step; carrying every column through the
    # deduplication spilled under the memory limit: 1M events, 9.2 -> 7.3 CPU-s.) Then
    # parse each JSON document once (one json_extract with several paths) and classify each
    # distinct (user, groups) once, not each of a million rows.
    return f"""
    WITH k AS (
        SELECT rowid AS row_id, coalesce(audit_id, event_key) AS rid0,
               {stage_rank()} AS sr, {event_time()} AS et
        FROM "{table}" WHERE {where}
    ), keep AS (
        SELECT min(struct_pack(sr := sr, et := et, row_id := row_id)).row_id AS row_id
        FROM k GROUP BY rid0
    ), d AS NOT MATERIALIZED (
        -- read twice (the identities, the rows), but never stored: DuckDB would otherwise
        -- materialise every column of a million rows first (1M events: 2.05 -> 1.63 s)
        SELECT rowid AS row_id, coalesce(audit_id, event_key) AS rid0, {_COLUMNS}
        FROM "{table}" WHERE rowid IN (SELECT row_id FROM keep)
    ), who AS (
        SELECT username AS ku, user_groups AS kg, {policy.sql()} AS cls
        FROM (SELECT DISTINCT username, user_groups FROM d)
    ), x AS (
        SELECT d.*, {json_keys("user_extra", _EXTRA_KEYS)} AS ex FROM d
    )
    SELECT row_id,
           rid0 AS rid,
           {event_time()} AS ts,
           request_received IS NOT NULL AS received,
           coalesce(username, '') AS actor,
           who.cls AS actor_class,
           {client_ip()} AS client_ip,
           source_ips, user_agent, user_uid, user_groups, verb, stage, level,
           obj_resource, obj_subresource, obj_namespace, obj_name, obj_api_group, request_uri,
           response_code, exec_command, exec_container, provider, cluster,
           source_file, source_line, truncated,
           {first_string("ex[1]")} AS credential_id,
           {first_string("ex[2]")} AS bound_pod,
           {first_string("ex[3]")} AS bound_node,
           {json_value("annotations", ISSUED_CREDENTIAL)} AS issued_credential,
           json_extract_string(impersonated_user, '$.username') AS impersonated
    FROM x LEFT JOIN who ON who.ku IS NOT DISTINCT FROM x.username
                        AND who.kg IS NOT DISTINCT FROM x.user_groups
    """


# The event columns a request row is made from (never ``raw`` and the bodies: they are most
# of the bytes, and no request column is read from them).
_COLUMNS = ", ".join(
    f'"{c}"' for c in COLUMN_NAMES if c not in ("raw", "request_object", "response_object")
)


def check_table(table: str) -> str:
    """Table names cannot be bound as parameters: accept plain identifiers only."""
    if not _IDENT.match(table):
        raise InputError(f"not a plain SQL table name: {table[:80]!r}")
    return table


def materialize(
    con: duckdb.DuckDBPyConnection,
    table: str = TABLE,
    policy: ActorPolicy | None = None,
    *,
    persist: bool = False,
) -> int:
    """Build the request table the whole-log reconstruction works on.

    With ``persist`` (a case index, written by ``audit analyze --case``) it is kept as a
    real table, with a note of the events it was built from: pivots then read it instead of
    deduplicating and parsing the events again. It is not sorted: sorted by actor, DuckDB's
    per-block min/max would let a query of one actor skip the other actors' blocks (1M
    events: 24 -> 16 ms for the busiest actor, 10 -> 4 ms for a small one), but the sort
    costs 1.4 s at every ``analyze --case``, more than a session of pivots saves."""
    check_table(table)
    sql = select_requests(table, policy=policy)
    if persist:
        con.execute(f"CREATE OR REPLACE TABLE main.{REQUESTS} AS {sql}")
        con.execute(f"DROP TABLE IF EXISTS temp.{REQUESTS}")
        events, max_rowid = _shape(con, table)
        con.execute(
            f"CREATE OR REPLACE TABLE main.{META} AS SELECT ? AS source_table, ? AS events, "
            "? AS max_rowid, ? AS version",
            [table, events, max_rowid, META_VERSION],
        )
    else:
        # Unsorted, as the persisted table is: the steps order what they read. Sorting a
        # million requests here took 0.7 s of a 3.2 s build (and spilled under the limit).
        con.execute(f"CREATE OR REPLACE TEMP TABLE {REQUESTS} AS {sql}")
    row = con.execute(f"SELECT count(*) FROM {REQUESTS}").fetchone()
    return int(row[0]) if row else 0


def _shape(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int]:
    row = con.execute(f'SELECT count(*), coalesce(max(rowid), -1) FROM "{table}"').fetchone()
    return (int(row[0]), int(row[1])) if row else (0, -1)


def fresh(con: duckdb.DuckDBPyConnection, table: str = TABLE) -> bool:
    """Is there a persisted request table built from exactly the events now in ``table``?"""
    check_table(table)
    have = {
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' "
            "AND table_name IN (?, ?)",
            [REQUESTS, META],
        ).fetchall()
    }
    if have != {REQUESTS, META}:
        return False
    row = con.execute(
        f"SELECT source_table, events, max_rowid, version FROM main.{META}"
    ).fetchone()
    if not row or str(row[0]) != table or int(row[3]) != META_VERSION:
        return False
    return (int(row[1]), int(row[2])) == _shape(con, table)


def object_label(alias: str = "") -> str:
    """``namespace/resource/name[/subresource]`` (``-`` for cluster scope, ``*`` for a list),
    or the URI path of a non-resource request: the spelling ``podmortem audit object`` takes."""
    a = alias
    return (
        f"(CASE WHEN {a}obj_resource IS NULL THEN split_part(coalesce({a}request_uri, ''), '?', 1) "
        f"ELSE coalesce({a}obj_namespace, '-') || '/' || {a}obj_resource || '/' || "
        f"coalesce({a}obj_name, '*') || coalesce('/' || {a}obj_subresource, '') END)"
    )


def outcome(alias: str = "") -> str:
    """allowed / forbidden / failed from the response code (101 is an upgraded exec stream)."""
    a = alias
    return (
        f"(CASE WHEN {a}response_code IS NULL THEN 'unknown' "
        f"WHEN {a}response_code < 400 THEN 'allowed' "
        f"WHEN {a}response_code IN (401, 403) THEN 'forbidden' ELSE 'failed' END)"
    )
