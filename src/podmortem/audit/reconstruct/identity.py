"""The identity graph: who the actors are and what stands behind each username.

Nodes are Kubernetes identities (users, service accounts, nodes, anonymous), the cloud
principals behind them, the credentials they present, the pods and nodes those are bound
to, and the addresses they come from. Edges say how they connect:

- EKS: ``user.extra`` holds the IAM principal (``arn``, ``canonicalArn``, ``accessKeyId``,
  ``sessionName``, ``principalId``), the pivot to CloudTrail;
- GKE: the username is ``principalEmail`` (a Google account or a Google service account);
- AKS: an Entra user is a UPN or an object ID (``user.extra["oid"]`` when present);
- impersonation (``impersonatedUser``): the real actor and whom they acted as;
- credentials (KEP-4193): who requested a token, who presented it, what it is bound to.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.credentials import CredentialChain
from podmortem.audit.reconstruct.requests import (
    REQUESTS,
    first_distinct,
    first_string,
    json_keys,
)

MAX_ACTORS = 5000
MAX_LIST = 20
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
EKS_KEYS = ("arn", "canonicalArn", "accessKeyId", "sessionName", "principalId")
AKS_KEYS = ("oid",)
PERSON_CLASSES = ("human", "workload", "anonymous")


@dataclass(slots=True)
class Actor:
    name: str
    actor_class: str
    kind: str  # user | service-account | node | anonymous | control-plane | cloud-system
    requests: int
    forbidden: int
    first: datetime | None
    last: datetime | None
    client_ips: list[str]
    client_ip_count: int
    user_agents: list[str]
    credentials: list[str]
    uids: list[str]
    groups: list[str]
    providers: list[str]
    impersonated: list[str]
    cloud: dict[str, list[str]] = field(default_factory=dict)
    cloud_identity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.actor_class,
            "kind": self.kind,
            "requests": self.requests,
            "forbidden": self.forbidden,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "client_ips": self.client_ips,
            "client_ip_count": self.client_ip_count,
            "user_agents": self.user_agents,
            "credentials": self.credentials,
            "uids": self.uids,
            "groups": self.groups,
            "providers": self.providers,
            "impersonated": self.impersonated,
            "cloud_identity": self.cloud_identity,
            "cloud": self.cloud,
        }


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    relation: str
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "relation": self.relation, "count": self.count}


@dataclass(slots=True)
class IdentityGraph:
    actors: list[Actor] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    truncated: bool = False

    def actor(self, name: str) -> Actor | None:
        return next((a for a in self.actors if a.name == name), None)

    def add_node(self, node_id: str, kind: str, label: str) -> None:
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label})

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes.values()),
            "edges": [e.to_dict() for e in self.edges],
            "truncated": self.truncated,
        }


def _kind(name: str, actor_class: str) -> str:
    if actor_class in ("anonymous", "node", "control-plane", "cloud-system"):
        return actor_class
    return "service-account" if name.startswith("system:serviceaccount:") else "user"


def _cloud_identity(actor: Actor) -> str | None:
    if "arn" in actor.cloud or "canonicalArn" in actor.cloud:
        return "aws-iam"
    if "gke" in actor.providers and "@" in actor.name:
        return (
            "google-service-account"
            if actor.name.endswith(".gserviceaccount.com")
            else "google-account"
        )
    if "aks" in actor.providers and (
        "oid" in actor.cloud or "@" in actor.name or _GUID.match(actor.name)
    ):
        return "entra-id"
    return None


def actors(
    con: duckdb.DuckDBPyConnection,
    table: str = TABLE,
    requests: str = REQUESTS,
    *,
    where: str = "TRUE",
    params: list[object] | None = None,
) -> tuple[list[Actor], bool]:
    """One summary per actor (username) among the requests matching ``where``."""
    rows = con.execute(
        f"""
        SELECT actor, any_value(actor_class), count(*),
               count(*) FILTER (response_code IN (401, 403)), min(ts), max(ts),
               {first_distinct("client_ip", MAX_LIST)},
               count(DISTINCT client_ip),
               {first_distinct("user_agent", MAX_LIST)},
               {first_distinct("credential_id", MAX_LIST)},
               {first_distinct("user_uid", MAX_LIST)},
               list_slice(list_sort(list_distinct(flatten(
                   list(DISTINCT coalesce(user_groups, []))))), 1, {MAX_LIST}),
               list_sort(list_distinct(list(provider) FILTER (provider IS NOT NULL))),
               {first_distinct("impersonated", MAX_LIST)}
        FROM {requests} WHERE {where}
        GROUP BY actor ORDER BY min(ts), actor LIMIT {MAX_ACTORS + 1}
        """,
        params or [],
    ).fetchall()
    truncated = len(rows) > MAX_ACTORS
    out = []
    for r in rows[:MAX_ACTORS]:
        name, cls = str(r[0]), str(r[1])
        out.append(
            Actor(
                name=name,
                actor_class=cls,
                kind=_kind(name, cls),
                requests=int(r[2]),
                forbidden=int(r[3]),
                first=r[4],
                last=r[5],
                client_ips=sorted(str(x) for x in r[6] or []),
                client_ip_count=int(r[7]),
                user_agents=sorted(str(x) for x in r[8] or []),
                credentials=sorted(str(x) for x in r[9] or []),
                uids=sorted(str(x) for x in r[10] or []),
                groups=sorted(str(x) for x in r[11] or [] if x is not None),
                providers=sorted(str(x) for x in r[12] or []),
                impersonated=sorted(str(x) for x in r[13] or []),
            )
        )
    _cloud(con, table, out)
    return out, truncated


def _cloud(con: duckdb.DuckDBPyConnection, table: str, found: list[Actor]) -> None:
    """Cloud principals in ``user.extra`` (EKS IAM, AKS Entra object ID), per username."""
    if not found:
        return
    keys = (*EKS_KEYS, *AKS_KEYS)
    picks = ", ".join(
        first_distinct(first_string(f"ex[{i}]"), MAX_LIST) for i in range(1, len(keys) + 1)
    )
    names = [a.name for a in found]
    by_name = {a.name: a for a in found}
    # Row ids first (one column, filter pushed into the scan), JSON only for those rows.
    anonymous = " OR username IS NULL" if "" in names else ""
    rows = con.execute(
        f"""SELECT username, {picks} FROM (
          SELECT username, {json_keys("user_extra", keys)} AS ex FROM (
            -- Each distinct document parsed once: a controller sends the same one all day.
            SELECT DISTINCT coalesce(username, '') AS username, user_extra FROM "{table}"
            WHERE rowid IN (SELECT rowid FROM "{table}"
                            WHERE username IN (SELECT unnest(?::VARCHAR[])){anonymous})
              AND user_extra IS NOT NULL))
        GROUP BY ALL""",
        [names],
    ).fetchall()
    for r in rows:
        a = by_name.get(str(r[0]))
        if a is None:
            continue
        for k, vals in zip(keys, r[1:], strict=True):
            if vals:
                a.cloud[k] = sorted(str(v) for v in vals)
    for a in found:
        a.cloud_identity = _cloud_identity(a)


def build_graph(
    found: list[Actor], chains: list[CredentialChain], truncated: bool
) -> IdentityGraph:
    g = IdentityGraph(actors=found, truncated=truncated)
    for a in found:
        aid = f"actor:{a.name}"
        g.add_node(aid, a.kind, a.name)
        for key in ("canonicalArn", "arn", "accessKeyId"):
            for v in a.cloud.get(key, []):
                nid = f"aws:{v}"
                g.add_node(nid, "aws-access-key" if key == "accessKeyId" else "aws-iam", v)
                g.edges.append(Edge(nid, aid, "authenticates-as"))
        for v in a.cloud.get("oid", []):
            g.add_node(f"entra:{v}", "entra-object", v)
            g.edges.append(Edge(f"entra:{v}", aid, "authenticates-as"))
        for imp in a.impersonated:
            g.add_node(f"actor:{imp}", "user", imp)
            g.edges.append(Edge(aid, f"actor:{imp}", "impersonates"))
        if a.actor_class in PERSON_CLASSES:
            for ip in a.client_ips:
                g.add_node(f"ip:{ip}", "address", ip)
                g.edges.append(Edge(aid, f"ip:{ip}", "connects-from"))
    for ch in chains:
        cid = f"credential:{ch.credential_id}"
        g.add_node(cid, f"credential-{ch.kind}", ch.credential_id)
        if ch.issue:
            g.add_node(f"actor:{ch.issue.requester}", "user", ch.issue.requester)
            g.edges.append(Edge(f"actor:{ch.issue.requester}", cid, "requested"))
        for u in ch.uses:
            g.edges.append(Edge(f"actor:{u.actor}", cid, "presents", u.requests))
        if ch.bound_pod:
            g.add_node(f"pod:{ch.bound_pod}", "pod", ch.bound_pod)
            g.edges.append(Edge(cid, f"pod:{ch.bound_pod}", "bound-to"))
        if ch.bound_node:
            g.add_node(f"node:{ch.bound_node}", "node", ch.bound_node)
            g.edges.append(Edge(cid, f"node:{ch.bound_node}", "bound-to"))
    return g
