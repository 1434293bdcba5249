"""Following a credential from its issuance to every use (KEP-4193), and stolen-token use.

Since Kubernetes 1.29 the API server writes the ID of the credential behind each request in
``user.extra["authentication.kubernetes.io/credential-id"]`` (``JTI=<uuid>`` for a
service-account token, ``X509SHA256=<hex>`` for a client certificate) and, on the
TokenRequest that minted a token, the annotation
``authentication.kubernetes.io/issued-credential-id``. The pair links a token requested by
one identity (the kubelet, or an attacker with ``serviceaccounts/token`` create) to every
request made with it, whoever presents it.

A token bound to a pod carries ``pod-name``/``node-name`` in ``user.extra``. It should only
arrive from that pod's or that node's address (:mod:`.origins`); arriving from anywhere else
means it left the pod: stolen-token use.

Where a log has no credential IDs (GKE's LogEntry carries no ``user.extra``; clusters before
1.29), a workload service account is followed by name instead, and a use from a public
address by an account that otherwise works from inside the cluster is flagged; the link to a
TokenRequest is then only "same service account, earlier", and the output says so.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.origins import Origins, is_public, learn
from podmortem.audit.reconstruct.requests import REQUESTS

SA_PREFIX = "system:serviceaccount:"
MAX_IDS = 50  # audit IDs kept per use group; the count is always exact
MAX_CHAINS = 2000  # chains reported, misused first
MAX_FOLLOW = 20_000  # credentials judged one by one; above, screened in SQL first
LONG_LIVED_S = 86_400


@dataclass(frozen=True, slots=True)
class TokenIssue:
    audit_id: str
    time: datetime | None
    requester: str
    requester_class: str
    client_ip: str | None
    user_agent: str | None
    namespace: str | None
    service_account: str | None
    credential_id: str | None
    bound_kind: str | None
    bound_name: str | None
    expiration_seconds: int | None
    response_code: int | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "time": _iso(self.time),
            "requester": self.requester,
            "requester_class": self.requester_class,
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
            "service_account": f"{self.namespace}/{self.service_account}",
            "credential_id": self.credential_id,
            "bound_object": (
                f"{self.bound_kind}/{self.bound_name}"
                if self.bound_kind or self.bound_name
                else None
            ),
            "expiration_seconds": self.expiration_seconds,
            "response_code": self.response_code,
            "source": self.source,
        }


@dataclass(slots=True)
class CredentialUse:
    actor: str
    actor_class: str
    client_ip: str | None
    user_agent: str | None
    bound_pod: str | None
    bound_node: str | None
    requests: int
    forbidden: int
    first: datetime | None
    last: datetime | None
    audit_ids: list[str]
    reasons: list[str] = field(default_factory=list)
    confidence: str | None = None  # high | medium | low when misused

    @property
    def misused(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "actor_class": self.actor_class,
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
            "bound_pod": self.bound_pod,
            "bound_node": self.bound_node,
            "requests": self.requests,
            "forbidden": self.forbidden,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "audit_ids": self.audit_ids,
            "misused": self.misused,
            "reasons": self.reasons,
            "confidence": self.confidence,
        }


@dataclass(slots=True)
class CredentialChain:
    """One credential: how it was issued (if the log shows it) and every use of it."""

    credential_id: str
    kind: str  # JTI | X509SHA256 | service-account | other
    basis: str  # credential-id | service-account
    subject: str  # the identity the credential authenticates as
    issue: TokenIssue | None = None
    issue_link: str | None = None  # credential-id | service-account-and-time
    bound_pod: str | None = None  # namespace/name
    bound_node: str | None = None
    expected_origins: dict[str, str] = field(default_factory=dict)  # ip -> pod/node it is
    uses: list[CredentialUse] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)

    @property
    def misused(self) -> bool:
        return any(u.misused for u in self.uses)

    @property
    def first_use(self) -> datetime | None:
        times = [u.first for u in self.uses if u.first]
        return min(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "credential_id": self.credential_id,
            "kind": self.kind,
            "basis": self.basis,
            "subject": self.subject,
            "issued": self.issue.to_dict() if self.issue else None,
            "issue_link": self.issue_link,
            "bound_pod": self.bound_pod,
            "bound_node": self.bound_node,
            "expected_origins": self.expected_origins,
            "misused": self.misused,
            "actors": sorted({u.actor for u in self.uses}),
            "requests": sum(u.requests for u in self.uses),
            "uses": [u.to_dict() for u in self.uses],
            "observations": self.observations,
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _kind(cred: str) -> str:
    head = cred.split("=", 1)[0]
    return head if head in ("JTI", "X509SHA256") else "other"


def issues(
    con: duckdb.DuckDBPyConnection, table: str = TABLE, requests: str = REQUESTS
) -> list[TokenIssue]:
    """Every TokenRequest (``create serviceaccounts/token``) in the request table."""
    rows = con.execute(
        f"""
        SELECT r.rid, r.ts, r.actor, r.actor_class, r.client_ip, r.user_agent,
               r.obj_namespace, r.obj_name, r.issued_credential,
               json_extract_string(e.request_object, '$.spec.boundObjectRef.kind'),
               json_extract_string(e.request_object, '$.spec.boundObjectRef.name'),
               TRY_CAST(json_extract_string(e.request_object, '$.spec.expirationSeconds')
                        AS BIGINT),
               r.response_code, r.source_file || ':' || CAST(r.source_line AS VARCHAR)
        FROM {requests} r JOIN "{table}" e ON e.rowid = r.row_id
        WHERE r.obj_resource = 'serviceaccounts' AND r.obj_subresource = 'token'
          AND r.verb = 'create'
        ORDER BY r.ts LIMIT {MAX_CHAINS}
        """
    ).fetchall()
    return [
        TokenIssue(
            audit_id=str(r[0]),
            time=r[1],
            requester=str(r[2]),
            requester_class=str(r[3]),
            client_ip=r[4],
            user_agent=r[5],
            namespace=r[6],
            service_account=r[7],
            credential_id=r[8],
            bound_kind=r[9],
            bound_name=r[10],
            expiration_seconds=int(r[11]) if r[11] is not None else None,
            response_code=r[12],
            source=str(r[13]),
        )
        for r in rows
    ]


def _uses(
    con: duckdb.DuckDBPyConnection, requests: str, where: str, params: Sequence[object]
) -> list[tuple[str, CredentialUse]]:
    rows = con.execute(
        f"""
        SELECT coalesce(credential_id, actor) AS cred, actor, any_value(actor_class), client_ip,
               user_agent, bound_pod, bound_node, count(*),
               count(*) FILTER (response_code IN (401, 403)), min(ts), max(ts),
               list_slice(list(rid ORDER BY ts), 1, {MAX_IDS})
        FROM {requests}
        WHERE {where}
        GROUP BY cred, actor, client_ip, user_agent, bound_pod, bound_node
        ORDER BY min(ts)
        """,
        list(params),
    ).fetchall()
    return [
        (
            str(r[0]),
            CredentialUse(
                actor=str(r[1]),
                actor_class=str(r[2]),
                client_ip=r[3],
                user_agent=r[4],
                bound_pod=r[5],
                bound_node=r[6],
                requests=int(r[7]),
                forbidden=int(r[8]),
                first=r[9],
                last=r[10],
                audit_ids=[str(x) for x in r[11] or []],
            ),
        )
        for r in rows
    ]


def follow(
    con: duckdb.DuckDBPyConnection,
    table: str = TABLE,
    requests: str = REQUESTS,
    *,
    origins: Origins | None = None,
    only: str | Sequence[str] | None = None,
    stats: dict[str, int] | None = None,
) -> list[CredentialChain]:
    """Link TokenRequests to uses and judge every use of a bound token against its binding.

    ``only`` restricts the work to some credential IDs (or, for logs without IDs,
    service-account usernames): what ``podmortem audit credential`` asks. ``stats``, if
    given, receives how many credentials the log holds and how many were followed.
    """
    wanted = [only] if isinstance(only, str) else list(only) if only is not None else None
    screened = _screen(con, requests) if wanted is None else None
    if stats is not None and screened is not None:
        stats["credentials_total"], stats["credentials_followed"] = (
            screened[0],
            (len(screened[1]) if screened[1] is not None else screened[0]),
        )
    if screened is not None and screened[1] is not None:
        where, params = "credential_id IN (SELECT unnest(?::VARCHAR[]))", [screened[1]]
        sa_where = f"credential_id IS NULL AND actor LIKE '{SA_PREFIX}%'"
        sa_params: list[object] = []
    elif wanted is None:
        where, params = "credential_id IS NOT NULL", []
        sa_where = f"credential_id IS NULL AND actor LIKE '{SA_PREFIX}%'"
        sa_params = []
    else:
        where, params = "credential_id IN (SELECT unnest(?::VARCHAR[]))", [wanted]
        sa_where = "credential_id IS NULL AND actor IN (SELECT unnest(?::VARCHAR[]))"
        sa_params = [wanted]
    chains: dict[str, CredentialChain] = {}
    for cred, use in _uses(con, requests, where, params):
        ch = chains.setdefault(cred, CredentialChain(cred, _kind(cred), "credential-id", use.actor))
        ch.uses.append(use)
    # Service accounts seen without credential IDs (GKE, older clusters): follow by name.
    for cred, use in _uses(con, requests, sa_where, sa_params):
        key = f"serviceaccount:{cred}"
        ch = chains.setdefault(
            key, CredentialChain(key, "service-account", "service-account", cred)
        )
        ch.uses.append(use)
    all_issues = issues(con, table, requests)
    if wanted is not None:
        all_issues = [
            i
            for i in all_issues
            if i.credential_id in wanted
            or f"{SA_PREFIX}{i.namespace}:{i.service_account}" in wanted
        ]
    by_id = {i.credential_id: i for i in all_issues if i.credential_id}
    for cid, issue in by_id.items():
        if cid not in chains:
            sa = f"{SA_PREFIX}{issue.namespace}:{issue.service_account}"
            chains[cid] = CredentialChain(cid, _kind(cid), "credential-id", sa)
        chains[cid].issue = issue
        chains[cid].issue_link = "credential-id"
    _bind(chains, all_issues)
    # A token whose issuance is in the log but whose uses carry no ID (GKE): the chain
    # that follows its service account by name has taken the issuance over; an empty
    # chain of the bare ID would only repeat it.
    adopted = {
        c.issue.credential_id
        for c in chains.values()
        if c.basis == "service-account" and c.issue and c.issue.credential_id
    }
    for cid in adopted:
        if cid in chains and not chains[cid].uses:
            del chains[cid]
    if origins is None:
        nodes = sorted({c.bound_node for c in chains.values() if c.bound_node})
        pods = sorted({_split_pod(c.bound_pod) for c in chains.values() if c.bound_pod})
        # Following by name compares with every pod and node address in the cluster; a
        # bound token only with its own pod's and node's.
        by_name = any(c.basis == "service-account" for c in chains.values())
        full = wanted is None or by_name
        origins = learn(con, table) if full else learn(con, table, nodes=nodes, pods=pods)
    for ch in chains.values():
        _judge(ch, origins)
    ordered = sorted(
        chains.values(),
        key=lambda c: (
            not c.misused,
            c.first_use.timestamp() if c.first_use else float("inf"),
            c.credential_id,
        ),
    )
    return ordered[:MAX_CHAINS]


# Not globally routable, by prefix (the screen runs in SQL over every credential; the
# exact test, is_public(), runs on what it keeps).
_PRIVATE = (
    r"^(10\.|127\.|169\.254\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\."
    r"|100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.|::1$|f[cd]|fe80:)"
)


def _screen(con: duckdb.DuckDBPyConnection, requests: str) -> tuple[int, list[str] | None]:
    """Bound the Python work on logs with very many credentials (every pod's token rotates
    hourly). Above ``MAX_FOLLOW`` credentials, only those that could show misuse are
    followed: used from more than one address, from a public address, or issued in this
    log. A token used only from one private address is left out; if that address is
    another pod's, its theft inside the cluster is missed, and the count of credentials
    left out is reported."""
    row = con.execute(
        f"SELECT count(DISTINCT credential_id) FROM {requests} WHERE credential_id IS NOT NULL"
    ).fetchone()
    total = int(row[0]) if row else 0
    if total <= MAX_FOLLOW:
        return total, None
    keep = [
        str(r[0])
        for r in con.execute(
            f"""
            SELECT credential_id FROM {requests} WHERE credential_id IS NOT NULL
            GROUP BY credential_id
            HAVING count(DISTINCT client_ip) > 1
                OR bool_or(NOT regexp_matches(coalesce(client_ip, ''), ?))
            UNION
            SELECT issued_credential FROM {requests} WHERE issued_credential IS NOT NULL
            LIMIT {MAX_FOLLOW}
            """,
            [_PRIVATE],
        ).fetchall()
    ]
    return total, keep


def _split_pod(pod: str | None) -> tuple[str, str]:
    ns, _, name = (pod or "").partition("/")
    return ns, name


def _bind(chains: dict[str, CredentialChain], all_issues: list[TokenIssue]) -> None:
    """What each credential is bound to: the pod/node in ``user.extra``, else the TokenRequest's
    bound object (and the kubelet that asked for it)."""
    by_sa: dict[str, list[TokenIssue]] = defaultdict(list)
    for i in all_issues:
        by_sa[f"{SA_PREFIX}{i.namespace}:{i.service_account}"].append(i)
    for ch in chains.values():
        ns = (
            ch.subject[len(SA_PREFIX) :].split(":", 1)[0]
            if ch.subject.startswith(SA_PREFIX)
            else None
        )
        pods = {u.bound_pod for u in ch.uses if u.bound_pod}
        nodes = {u.bound_node for u in ch.uses if u.bound_node}
        if ch.issue and ch.issue.bound_kind == "Pod" and ch.issue.bound_name:
            pods.add(ch.issue.bound_name)
        if ch.issue and ch.issue.requester.startswith("system:node:"):
            nodes.add(ch.issue.requester[len("system:node:") :])
        if len(pods) > 1 or len(nodes) > 1:
            # The binding claims in user.extra are set by the API server from the token: one
            # token, one pod. Several mean a forged or confused log; say so, judge nothing.
            ch.observations.append(
                f"inconsistent binding: pods {sorted(pods)}, nodes {sorted(nodes)}"
            )
            continue
        if pods and ns:
            ch.bound_pod = f"{ns}/{next(iter(pods))}"
        if nodes:
            ch.bound_node = next(iter(nodes))
        if ch.basis == "service-account" and ch.issue is None and by_sa.get(ch.subject):
            first = ch.first_use
            earlier = [
                i for i in by_sa[ch.subject] if first is None or (i.time and i.time <= first)
            ]
            if earlier:
                ch.issue = earlier[-1]
                ch.issue_link = "service-account-and-time"
                ch.observations.append(
                    "no credential IDs in this log: the TokenRequest is the last one for this "
                    "service account before its first use, not a proven link"
                )
        if ch.issue:
            if ch.issue.expiration_seconds and ch.issue.expiration_seconds > LONG_LIVED_S:
                ch.observations.append(
                    f"long-lived token requested: {ch.issue.expiration_seconds} s"
                )
            if ch.issue.requester_class not in ("node", "control-plane", "cloud-system"):
                ch.observations.append(
                    f"token requested by {ch.issue.requester} ({ch.issue.requester_class}), "
                    "not by a kubelet or controller"
                )


def _judge(ch: CredentialChain, origins: Origins) -> None:
    expected: dict[str, str] = {}
    if ch.bound_pod:
        for ip in origins.pod_ips.get(_split_pod(ch.bound_pod), ()):
            expected[ip] = f"pod {ch.bound_pod}"
    if ch.bound_node:
        for ip in origins.node_ips.get(ch.bound_node, ()):
            expected[ip] = f"node {ch.bound_node}"
    ch.expected_origins = dict(sorted(expected.items()))
    bound = ch.bound_pod or ch.bound_node
    bound_to = f"pod {ch.bound_pod}" if ch.bound_pod else f"node {ch.bound_node}"
    if ch.basis == "service-account":
        _judge_by_name(ch, origins)
        return
    if not bound:
        return  # an unbound token (or a certificate): no origin to compare with
    # The bound workload's own user agent: that of its first use from where it is bound
    # (uses are in time order). Later agents from the same place are noted, weakly: several
    # containers of one pod share its token, and a user agent is whatever the client says.
    home = [u for u in ch.uses if u.client_ip in expected and u.user_agent]
    baseline_agents = {home[0].user_agent} if home else set()
    what = " or ".join(
        f"{label} ({', '.join(sorted(ip for ip, lab in expected.items() if lab == label))})"
        for label in sorted(set(expected.values()))
    )
    for u in ch.uses:
        if expected and u.client_ip not in expected:
            owner = origins.owner(u.client_ip)
            where = (
                f"{owner} ({u.client_ip})" if owner else f"{u.client_ip or 'an unknown address'}"
            )
            u.reasons.append(f"used from {where}, not from {what} it is bound to")
            u.confidence = "high"
        elif not expected and is_public(u.client_ip):
            u.reasons.append(
                f"bound to {bound_to}"
                f" but used from the public address {u.client_ip} (the pod's and node's own "
                "addresses are not in this log)"
            )
            u.confidence = "medium"
        if baseline_agents and u.user_agent not in baseline_agents:
            note = f"user agent {u.user_agent!r} differs from the bound workload's own"
            if u.reasons:
                u.reasons.append(note)
            else:
                u.reasons.append(note + " (same address; user agents are client-set)")
                u.confidence = "low"


def _judge_by_name(ch: CredentialChain, origins: Origins) -> None:
    inside = [u for u in ch.uses if origins.in_cluster(u.client_ip)]
    if not inside:
        return  # never seen working from inside: a CI or external identity, nothing to compare
    agents = {u.user_agent for u in inside if u.user_agent}
    for u in ch.uses:
        if not origins.in_cluster(u.client_ip) and is_public(u.client_ip):
            u.reasons.append(
                f"service account works from inside the cluster ({len(inside)} origin(s)) but "
                f"was used from the public address {u.client_ip}"
            )
            if agents and u.user_agent not in agents:
                u.reasons.append(f"user agent {u.user_agent!r} differs from its in-cluster use")
            u.confidence = "medium"
