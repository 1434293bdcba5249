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
from functools import lru_cache

import duckdb

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.requests import client_ip, fresh

MAX_PODS = 200_000  # distinct (namespace, pod) addresses remembered; beyond, counted only
NODE_PREFIX = "system:node:"
POD_IPS = "recon_pod_ips"
NODE_IPS = "recon_node_ips"


@dataclass(slots=True)
class Origins:
    pod_ips: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    node_ips: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    truncated: bool = False

    _owners: dict[str, str] | None = None

    def owner(self, ip: str | None) -> str | None:
        """Who an address belongs to, as the log shows it: ``node NAME`` or ``pod NS/NAME``
        (a node first: pods on the host network share its address)."""
        if not ip:
            return None
        if self._owners is None:
            owners: dict[str, str] = {}
            for (ns, p), ips in sorted(self.pod_ips.items(), reverse=True):
                owners.update(dict.fromkeys(ips, f"pod {ns}/{p}"))
            for n, ips in sorted(self.node_ips.items(), reverse=True):
                owners.update(dict.fromkeys(ips, f"node {n}"))
            self._owners = owners
        return self._owners.get(ip)

    def in_cluster(self, ip: str | None) -> bool:
        return self.owner(ip) is not None


# Documentation ranges (RFC 5737, RFC 3849) stand in for public addresses in examples and
# tests, so they count as public here.
_DOC_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


@lru_cache(maxsize=65_536)
def is_public(ip: str | None) -> bool:
    """A globally routable address: not private, loopback, link-local or shared (CGNAT)."""
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_global or any(addr in n for n in _DOC_NETS if n.version == addr.version)


def learn(
    con: duckdb.DuckDBPyConnection,
    table: str = TABLE,
    *,
    nodes: list[str] | None = None,
    pods: list[tuple[str, str]] | None = None,
    use_saved: bool = True,
) -> Origins:
    """Read pod and node addresses from the events table. ``nodes``/``pods`` limit the
    search (a pivot needs only the binding of one credential)."""
    if use_saved and fresh(con, table) and _saved(con):
        return _load_saved(con, nodes, pods)
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


def save(con: duckdb.DuckDBPyConnection, o: Origins) -> None:
    """Keep the addresses in the case index beside the request table they were read with."""
    con.execute(f"CREATE OR REPLACE TABLE main.{POD_IPS} (ns VARCHAR, pod VARCHAR, ip VARCHAR)")
    con.execute(f"CREATE OR REPLACE TABLE main.{NODE_IPS} (node VARCHAR, ip VARCHAR)")
    pod_rows = [(ns, p, ip) for (ns, p), ips in o.pod_ips.items() for ip in sorted(ips)]
    node_rows = [(n, ip) for n, ips in o.node_ips.items() for ip in sorted(ips)]
    if pod_rows:
        con.executemany(f"INSERT INTO main.{POD_IPS} VALUES (?, ?, ?)", pod_rows)
    if node_rows:
        con.executemany(f"INSERT INTO main.{NODE_IPS} VALUES (?, ?)", node_rows)


def _saved(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND table_name IN (?, ?)",
        [POD_IPS, NODE_IPS],
    ).fetchone()
    return bool(row and row[0] == 2)


def _load_saved(
    con: duckdb.DuckDBPyConnection, nodes: list[str] | None, pods: list[tuple[str, str]] | None
) -> Origins:
    o = Origins()
    for ns, pod, ip in con.execute(f"SELECT ns, pod, ip FROM main.{POD_IPS}").fetchall():
        if pods is None or (ns, pod) in pods:
            o.pod_ips[(str(ns), str(pod))].add(str(ip))
    for node, ip in con.execute(f"SELECT node, ip FROM main.{NODE_IPS}").fetchall():
        if nodes is None or node in nodes:
            o.node_ips[str(node)].add(str(ip))
    return o


def _valid(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True
