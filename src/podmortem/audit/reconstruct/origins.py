"""Where pods and nodes are: the addresses the log itself reveals.

A token bound to a pod should only ever arrive from that pod's address, or from its node's
(pod traffic to the API server may be source-NATed to the node). The log says where both
are: a kubelet reports a pod's IP when it patches ``pods/status`` (``status.podIP``,
``status.podIPs``), and a kubelet's own requests come from its node. Nothing here is taken
from outside the evidence.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

import duckdb

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.requests import client_ip

MAX_PODS = 200_000  # distinct (namespace, pod) addresses remembered; beyond, counted only
NODE_PREFIX = "system:node:"


@dataclass(slots=True)
class Origins:
    pod_ips: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    node_ips: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    truncated: bool = False

    def owner(self, ip: str | None) -> str | None:
        """Who an address belongs to, as the log shows it: ``node NAME`` or ``pod NS/NAME``."""
        if not ip:
            return None
        nodes = sorted(n for n, ips in self.node_ips.items() if ip in ips)
        if nodes:
            return f"node {nodes[0]}"
        pods = sorted(f"{ns}/{p}" for (ns, p), ips in self.pod_ips.items() if ip in ips)
        return f"pod {pods[0]}" if pods else None

    def in_cluster(self, ip: str | None) -> bool:
        return self.owner(ip) is not None


def is_public(ip: str | None) -> bool:
    """A globally routable address: not private, loopback, link-local, shared (CGNAT) or
    documentation space... except that documentation ranges (RFC 5737) stand in for public
    addresses in examples and tests, so they count as public here."""
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    doc = any(
        addr in ipaddress.ip_network(n)
        for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
        if addr.version == ipaddress.ip_network(n).version
    )
    return doc or addr.is_global


def learn(
    con: duckdb.DuckDBPyConnection,
    table: str = TABLE,
    *,
    nodes: list[str] | None = None,
    pods: list[tuple[str, str]] | None = None,
) -> Origins:
    """Read pod and node addresses from the events table. ``nodes``/``pods`` limit the
    search (a pivot needs only the binding of one credential)."""
    o = Origins()
    pod_filter = ""
    params: list[object] = []
    if pods is not None:
        if not pods:
            pod_filter = " AND FALSE"
        else:
            pod_filter = (
                " AND (" + " OR ".join(["(obj_namespace = ? AND obj_name = ?)"] * len(pods)) + ")"
            )
            for ns, name in pods:
                params += [ns, name]
    ip_paths = ("$.status.podIP", "$.status.podIPs[0].ip", "$.status.podIPs[1].ip")
    picks = ", ".join(
        f"json_extract_string({col}, '{p}')"
        for col in ("request_object", "response_object")
        for p in ip_paths
    )
    sql = f"""
        SELECT obj_namespace, obj_name, list_distinct([{picks}]) AS ips
        FROM "{table}"
        WHERE obj_resource = 'pods' AND obj_namespace IS NOT NULL AND obj_name IS NOT NULL
          AND (request_object IS NOT NULL OR response_object IS NOT NULL){pod_filter}
    """
    rows = con.execute(
        f"SELECT obj_namespace, obj_name, list_distinct(flatten(list(ips))) FROM ({sql}) "
        f"GROUP BY ALL LIMIT {MAX_PODS + 1}",
        params,
    ).fetchall()
    o.truncated = len(rows) > MAX_PODS
    for ns, name, ips in rows[:MAX_PODS]:
        for ip in ips or []:
            if ip and _valid(ip):
                o.pod_ips[(str(ns), str(name))].add(str(ip))
    node_filter = f"username LIKE '{NODE_PREFIX}%'"
    node_params: list[object] = []
    if nodes is not None:
        if not nodes:
            return o
        node_filter = "username IN (" + ",".join("?" * len(nodes)) + ")"
        node_params = [NODE_PREFIX + n for n in nodes]
    for user, ips in con.execute(
        f'SELECT username, list_distinct(list({client_ip()})) FROM "{table}" '
        f"WHERE {node_filter} GROUP BY ALL",
        node_params,
    ).fetchall():
        for ip in ips or []:
            if ip and _valid(ip):
                o.node_ips[str(user)[len(NODE_PREFIX) :]].add(str(ip))
    return o


def _valid(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True
