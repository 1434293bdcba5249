"""Blast radius: what a suspicious actor read, created, changed, deleted or executed in.

Counted per actor *and address* so that a stolen service-account token's reach is not mixed
with what the workload it belongs to does every day. Only allowed requests reach anything;
refused attempts are counted beside them (they show intent). A ``list`` reads every object
of its kind in its scope, spelled ``namespace/*`` (``*`` cluster-wide). Pods the actor
created are followed to the node they ran on: the kubelet that reports the pod's status
names it, as does ``spec.nodeName`` when the pod was pinned.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import duckdb

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.requests import REQUESTS, first_distinct

MAX_OBJECTS = 100  # per category and action; the count is exact
CATEGORY_SQL = """(CASE
    WHEN obj_resource = 'secrets' THEN 'secrets'
    WHEN obj_resource = 'configmaps' THEN 'configmaps'
    WHEN obj_resource IN ('roles', 'clusterroles', 'rolebindings', 'clusterrolebindings')
      THEN 'roles'
    WHEN obj_resource = 'serviceaccounts' AND obj_subresource = 'token' THEN 'tokens'
    WHEN obj_resource = 'serviceaccounts' THEN 'serviceaccounts'
    WHEN obj_resource = 'pods' THEN 'pods'
    WHEN obj_resource = 'nodes' THEN 'nodes'
    WHEN obj_resource IN ('deployments', 'daemonsets', 'statefulsets', 'replicasets', 'jobs',
                          'cronjobs', 'replicationcontrollers') THEN 'workloads'
    WHEN obj_resource = 'events' THEN 'events'
    WHEN obj_resource = 'namespaces' THEN 'namespaces'
    WHEN obj_resource IS NULL THEN 'api-paths'
    ELSE 'other' END)"""
ACTION_SQL = """(CASE
    WHEN obj_subresource IN ('exec', 'attach', 'portforward') THEN 'executed'
    WHEN verb IN ('get', 'list', 'watch') THEN 'read'
    WHEN verb = 'create' THEN 'created'
    WHEN verb IN ('update', 'patch') THEN 'changed'
    WHEN verb IN ('delete', 'deletecollection') THEN 'deleted'
    ELSE coalesce(verb, '?') END)"""
OBJECT_SQL = """(CASE
    WHEN obj_resource IS NULL THEN split_part(coalesce(request_uri, ''), '?', 1)
    WHEN obj_name IS NULL THEN coalesce(obj_namespace || '/', '') || '*'
      || CASE WHEN obj_resource NOT IN ('secrets','configmaps','pods','nodes','events',
                                        'namespaces','serviceaccounts')
              THEN ' ' || obj_resource ELSE '' END
    ELSE coalesce(obj_namespace || '/', '') || obj_name
      || CASE WHEN obj_resource NOT IN ('secrets','configmaps','pods','nodes','events',
                                        'namespaces','serviceaccounts')
              THEN ' (' || obj_resource || ')' ELSE '' END
    END)"""


@dataclass(slots=True)
class BlastRadius:
    actor: str
    client_ip: str | None
    reach: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    refused: dict[str, dict[str, int]] = field(default_factory=dict)
    nodes_reached: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "client_ip": self.client_ip,
            "reach": self.reach,
            "counts": self.counts,
            "refused": self.refused,
            "nodes_reached": self.nodes_reached,
        }


def blast_radius(
    con: duckdb.DuckDBPyConnection,
    keys: list[tuple[str, str | None]],
    table: str = TABLE,
    requests: str = REQUESTS,
) -> list[BlastRadius]:
    """Reach of each (actor, client address) in ``keys``."""
    if not keys:
        return []
    out = {k: BlastRadius(k[0], k[1]) for k in keys}
    key_list = [{"a": a, "ip": ip} for a, ip in keys]
    # A create names its object in the body, not in objectRef (the API server logs the
    # request before it has a name for it): take the name from requestObject.metadata.
    rows = con.execute(
        f"""
        WITH mine AS (
            -- Only the columns read below: this CTE is used twice, so it is materialised.
            SELECT row_id, actor, client_ip, verb, obj_resource, obj_subresource,
                   obj_namespace, obj_name, request_uri, response_code
            FROM {requests} r WHERE {_match("r.")}
        ), named AS (
            SELECT m.row_id, json_extract_string(e.request_object, '$.metadata.name') AS name
            FROM mine m JOIN "{table}" e ON e.rowid = m.row_id
            WHERE m.verb = 'create' AND m.obj_name IS NULL
        ), r AS (
            SELECT mine.* REPLACE (coalesce(mine.obj_name, named.name) AS obj_name)
            FROM mine LEFT JOIN named ON named.row_id = mine.row_id
        )
        SELECT actor, client_ip, {CATEGORY_SQL} AS cat, {ACTION_SQL} AS act,
               count(*) FILTER (response_code < 400),
               count(*) FILTER (response_code >= 400 OR response_code IS NULL),
               {first_distinct(OBJECT_SQL, MAX_OBJECTS, "response_code < 400")}
        FROM r
        GROUP BY ALL ORDER BY cat, act
        """,
        [key_list],
    ).fetchall()
    for actor, ip, cat, act, ok, refused, objs in rows:
        b = out.get((str(actor), ip))
        if b is None:
            continue
        if ok:
            b.reach.setdefault(str(cat), {})[str(act)] = sorted(str(o) for o in objs or [])
            b.counts.setdefault(str(cat), {})[str(act)] = int(ok)
        if refused:
            b.refused.setdefault(str(cat), {})[str(act)] = int(refused)
    _nodes_of_created_pods(con, table, requests, key_list, out)
    return list(out.values())


def _match(alias: str) -> str:
    """The request belongs to one of the (actor, address) keys bound as the parameter."""
    return (
        "EXISTS (SELECT 1 FROM (SELECT unnest(?::STRUCT(a VARCHAR, ip VARCHAR)[]) AS k) AS t "
        f"WHERE t.k.a = {alias}actor AND t.k.ip IS NOT DISTINCT FROM {alias}client_ip)"
    )


def _nodes_of_created_pods(
    con: duckdb.DuckDBPyConnection,
    table: str,
    requests: str,
    key_list: list[dict[str, str | None]],
    out: dict[tuple[str, str | None], BlastRadius],
) -> None:
    rows = con.execute(
        f"""
        WITH created AS (
            SELECT r.actor, r.client_ip, r.obj_namespace AS ns,
                   coalesce(r.obj_name,
                            json_extract_string(e.request_object, '$.metadata.name')) AS name,
                   json_extract_string(e.request_object, '$.spec.nodeName') AS pinned
            FROM {requests} r JOIN "{table}" e ON e.rowid = r.row_id
            WHERE r.obj_resource = 'pods' AND r.obj_subresource IS NULL AND r.verb = 'create'
              AND r.response_code < 400 AND {_match("r.")}
        ), ran AS (
            SELECT obj_namespace AS ns, obj_name AS name, substr(actor, 13) AS node
            FROM {requests}
            WHERE actor LIKE 'system:node:%' AND obj_resource = 'pods'
              AND (obj_namespace, obj_name) IN (SELECT (ns, name) FROM created)
        )
        SELECT c.actor, c.client_ip, c.ns || '/' || c.name,
               list_distinct(list(coalesce(r.node, c.pinned))
                             FILTER (coalesce(r.node, c.pinned) IS NOT NULL))
        FROM created c LEFT JOIN ran r ON r.ns = c.ns AND r.name = c.name
        GROUP BY ALL
        """,
        [key_list],
    ).fetchall()
    nodes: dict[tuple[str, str | None], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for actor, ip, pod, names in rows:
        for n in names or []:
            nodes[(str(actor), ip)][str(n)].add(str(pod))
    for key, by_node in nodes.items():
        if key in out:
            out[key].nodes_reached = {n: sorted(p) for n, p in sorted(by_node.items())}
