"""The attack narrative: findings and credential misuse, joined into one attacker's story and
told in order, each step filed under its ATT&CK tactic with the requests that prove it.

Steps are grouped into *threads*: the identities and addresses one attacker used. A thread
is keyed by (actor, client address) pairs, joined when

- they share an address outside the cluster (not a pod's or node's, as the log shows them):
  the anonymous probe and the stolen token used from the same host;
- one requested a token that another then presented (KEP-4193), unless the requester is a
  kubelet or controller, which mint tokens for every pod and would join everything.

A thread is told as an attack when it shows progression (``tactics.yml``: credential
misuse, or several tactics including one past execution and discovery); findings in
threads that are not are listed apart, unchained, so that nothing found is hidden.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import duckdb

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.blast import BlastRadius, blast_radius
from podmortem.audit.reconstruct.credentials import CredentialChain
from podmortem.audit.reconstruct.origins import Origins
from podmortem.audit.reconstruct.requests import REQUESTS
from podmortem.audit.reconstruct.tactics import TacticMap
from podmortem.findings import Finding, Severity

Key = tuple[str, str | None]  # (actor, client address)
MAX_EVIDENCE = 10  # request excerpts shown per step; the count is exact
MAX_IDS = 1000  # audit IDs listed per step
INFRA_CLASSES = ("node", "control-plane", "cloud-system")
ON_BEHALF = ("control-plane", "cloud-system")
PERSON_CLASSES = ("human", "workload", "anonymous")


@dataclass(frozen=True, slots=True)
class EvidenceEvent:
    audit_id: str
    time: datetime | None
    actor: str
    client_ip: str | None
    user_agent: str | None
    verb: str | None
    object: str
    response_code: int | None
    command: tuple[str, ...]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "time": self.time.isoformat() if self.time else None,
            "actor": self.actor,
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
            "verb": self.verb,
            "object": self.object,
            "response_code": self.response_code,
            "command": list(self.command) if self.command else None,
            "source": self.source,
        }


@dataclass(slots=True)
class Step:
    time: datetime | None
    tactic: str
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    title: str
    severity: Severity
    origin: str  # "finding:<rule_id>" or "reconstruction:<kind>"
    summary: str
    actors: list[str]
    evidence: list[EvidenceEvent]
    evidence_total: int
    audit_ids: list[str] = field(default_factory=list)  # all of them, up to MAX_IDS
    outcome: str = "allowed"  # allowed | refused | mixed: were the requests let through?

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat() if self.time else None,
            "tactic": self.tactic,
            "tactics": list(self.tactics),
            "techniques": list(self.techniques),
            "title": self.title,
            "severity": str(self.severity),
            "origin": self.origin,
            "summary": self.summary,
            "actors": self.actors,
            "evidence": [e.to_dict() for e in self.evidence],
            "evidence_total": self.evidence_total,
            "audit_ids": self.audit_ids,
            "outcome": self.outcome,
        }


def _outcome(evs: list[EvidenceEvent]) -> str:
    refused = sum(1 for e in evs if e.response_code is not None and e.response_code >= 400)
    if refused == 0:
        return "allowed"
    return "refused" if refused == len(evs) else "mixed"


@dataclass(slots=True)
class Thread:
    members: list[Key]
    steps: list[Step] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    credential_misuse: bool = False
    attack: bool = False
    blast: list[BlastRadius] = field(default_factory=list)
    note: str | None = None

    @property
    def tactics(self) -> list[str]:
        return sorted({s.tactic for s in self.steps})

    def to_dict(self, tmap: TacticMap) -> dict[str, Any]:
        by_tactic: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.steps):
            by_tactic[s.tactic].append(i)
        return {
            "members": [{"actor": a, "client_ip": ip} for a, ip in self.members],
            "links": self.links,
            "credential_misuse": self.credential_misuse,
            "start": self.steps[0].time.isoformat() if self.steps and self.steps[0].time else None,
            "end": self.steps[-1].time.isoformat() if self.steps and self.steps[-1].time else None,
            "kill_chain": [
                {"tactic": t, "steps": by_tactic[t]} for t in sorted(by_tactic, key=tmap.rank)
            ],
            "steps": [s.to_dict() for s in self.steps],
            "blast_radius": [b.to_dict() for b in self.blast],
            "note": self.note,
        }


@dataclass(slots=True)
class Narrative:
    attacks: list[Thread] = field(default_factory=list)
    unchained: list[Thread] = field(default_factory=list)
    tactic_map: TacticMap = field(default_factory=TacticMap.default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attacks": [t.to_dict(self.tactic_map) for t in self.attacks],
            "unchained": [t.to_dict(self.tactic_map) for t in self.unchained],
            "kill_chain_order": list(self.tactic_map.kill_chain),
        }


class _Union:
    def __init__(self) -> None:
        self.parent: dict[Key, Key] = {}

    def add(self, k: Key) -> None:
        self.parent.setdefault(k, k)

    def find(self, k: Key) -> Key:
        self.add(k)
        root = k
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[k] != root:
            self.parent[k], k = root, self.parent[k]
        return root

    def union(self, a: Key, b: Key) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb, key=str)] = min(ra, rb, key=str)


def _evidence_rows(
    con: duckdb.DuckDBPyConnection, requests: str, ids: list[str]
) -> dict[str, tuple[Key, EvidenceEvent, str]]:
    """Request excerpts for audit IDs, with their (actor, address) key and actor class."""
    if not ids:
        return {}
    rows = con.execute(
        f"""
        SELECT rid, ts, actor, client_ip, user_agent, verb,
               coalesce(obj_namespace, '-') || '/' || coalesce(obj_resource, '') ||
                 coalesce('/' || obj_name, '') || coalesce('/' || obj_subresource, '')
                 || CASE WHEN obj_resource IS NULL
                    THEN split_part(coalesce(request_uri, ''), '?', 1)
                    ELSE '' END,
               response_code, exec_command, source_file || ':' || CAST(source_line AS VARCHAR),
               actor_class
        FROM {requests} WHERE rid IN (SELECT unnest(?::VARCHAR[]))
        """,
        [ids],
    ).fetchall()
    out = {}
    for r in rows:
        ev = EvidenceEvent(
            audit_id=str(r[0]),
            time=r[1],
            actor=str(r[2]),
            client_ip=r[3],
            user_agent=r[4],
            verb=r[5],
            object=str(r[6]).replace("-//", "", 1) if str(r[6]).startswith("-//") else str(r[6]),
            response_code=r[7],
            command=tuple(str(c) for c in r[8] or ()),
            source=str(r[9]),
        )
        out[str(r[0])] = ((str(r[2]), r[3]), ev, str(r[10]))
    return out


def build(
    con: duckdb.DuckDBPyConnection,
    findings: list[Finding],
    chains: list[CredentialChain],
    origins: Origins,
    *,
    table: str = TABLE,
    requests: str = REQUESTS,
    tmap: TacticMap | None = None,
) -> Narrative:
    tmap = tmap or TacticMap.default()
    uf = _Union()
    classes: dict[Key, str] = {}
    links: dict[Key, list[str]] = defaultdict(list)
    # Step seeds: findings, by the requests that support them.
    fid_ids = [list(f.evidence) or [str(x) for x in f.extra.get("audit_ids", [])] for f in findings]
    rows = _evidence_rows(con, requests, sorted({i for ids in fid_ids for i in ids}))
    seeds: list[tuple[Step, dict[Key, list[EvidenceEvent]]]] = []
    for f, ids in zip(findings, fid_ids, strict=True):
        per_key: dict[Key, list[EvidenceEvent]] = defaultdict(list)
        for i in ids:
            if i in rows:
                key, ev, cls = rows[i]
                classes[key] = cls
                per_key[key].append(ev)
        if not per_key:
            continue
        techniques = tuple(f.techniques)
        step = Step(
            time=f.time,
            tactic=tmap.primary(techniques),
            tactics=tmap.tactics_of(techniques),
            techniques=techniques,
            title=f.title,
            severity=f.severity,
            origin=f"finding:{f.rule_id}",
            summary=f.summary,
            actors=[],
            evidence=[],
            evidence_total=0,
        )
        seeds.append((step, per_key))
    # Credential misuse and tokens minted by non-infrastructure identities.
    misuse_keys: set[Key] = set()
    minted: set[str] = set()
    pending: list[tuple[list[str], dict[Key, list[EvidenceEvent]]]] = []
    for ch in chains:
        bad = [u for u in ch.uses if u.misused and u.confidence in ("high", "medium")]
        issuer: Key | None = None
        if ch.issue and ch.issue.requester_class not in INFRA_CLASSES:
            issuer = (ch.issue.requester, ch.issue.client_ip)
        if issuer is not None:
            for u in ch.uses:
                uf.union(issuer, (u.actor, u.client_ip))
                links[issuer].append(
                    f"{ch.issue.requester if ch.issue else '?'} requested credential "
                    f"{ch.credential_id} that {u.actor} presented"
                )
        if not bad and (issuer is None or (ch.issue and ch.issue.audit_id in minted)):
            continue
        if issuer is not None and ch.issue:
            minted.add(ch.issue.audit_id)
        ids = [i for u in bad for i in u.audit_ids]
        if issuer is not None and ch.issue:
            ids.append(ch.issue.audit_id)
        cred_evidence: dict[Key, list[EvidenceEvent]] = defaultdict(list)
        pending.append((ids, cred_evidence))  # filled below, one query for all credentials
        for u in bad:
            misuse_keys.add((u.actor, u.client_ip))
        title = (
            f"Credential {ch.credential_id} used away from what it is bound to"
            if bad
            else f"Token for {ch.subject} requested by {ch.issue.requester if ch.issue else '?'}"
        )
        reasons = "; ".join(dict.fromkeys(r for u in bad for r in u.reasons))
        techniques = ("T1528", "T1550.001") if bad else ("T1528",)
        times = [u.first for u in bad if u.first] or (
            [ch.issue.time] if ch.issue and ch.issue.time else []
        )
        seeds.append(
            (
                Step(
                    time=min(times) if times else None,
                    tactic=tmap.primary(techniques),
                    tactics=tmap.tactics_of(techniques),
                    techniques=techniques,
                    title=title,
                    severity=Severity.HIGH if bad else Severity.MEDIUM,
                    origin=f"reconstruction:{'stolen-credential' if bad else 'token-minted'}",
                    summary=(reasons or "; ".join(ch.observations))
                    + (f" (link: {ch.issue_link})" if ch.issue_link else ""),
                    actors=[],
                    evidence=[],
                    evidence_total=0,
                ),
                cred_evidence,
            )
        )
    cred_rows = _evidence_rows(con, requests, sorted({i for ids, _ in pending for i in ids}))
    for ids, per_key in pending:
        for i in ids:
            if i in cred_rows:
                key, ev, cls = cred_rows[i]
                classes[key] = cls
                per_key[key].append(ev)
    for _, per_key in seeds:
        for k in per_key:
            uf.add(k)
    # Join keys that share an address outside the cluster, and pull in the other identities
    # seen from those addresses (an anonymous probe from the attacker's host).
    external = sorted({ip for k in list(uf.parent) if (ip := k[1]) and not origins.in_cluster(ip)})
    if external:
        anchors: dict[str, Key] = {}
        for m in list(uf.parent):
            if m[1] is not None:
                anchors.setdefault(m[1], m)
        for actor, ip, cls in con.execute(
            f"SELECT DISTINCT actor, client_ip, actor_class FROM {requests} "
            "WHERE client_ip IN (SELECT unnest(?::VARCHAR[]))",
            [external],
        ).fetchall():
            if str(cls) not in PERSON_CLASSES:
                continue
            k = (str(actor), ip)
            classes[k] = str(cls)
            anchor = anchors[str(ip)]
            if k != anchor:
                links[k].append(f"{actor} and {anchor[0]} both connected from {ip}")
            uf.union(anchor, k)
    threads: dict[Key, Thread] = {}
    for k in list(uf.parent):
        root = uf.find(k)
        threads.setdefault(root, Thread(members=[])).members.append(k)
    for step, per_key in seeds:
        by_root: dict[Key, list[EvidenceEvent]] = defaultdict(list)
        for k, evs in per_key.items():
            by_root[uf.find(k)].extend(evs)
        for root, evs in by_root.items():
            evs.sort(key=_when)
            threads[root].steps.append(
                replace(
                    step,
                    evidence=evs[:MAX_EVIDENCE],
                    evidence_total=len(evs),
                    audit_ids=[e.audit_id for e in evs[:MAX_IDS]],
                    outcome=_outcome(evs),
                    actors=sorted({e.actor for e in evs}),
                    time=evs[0].time or step.time,
                )
            )
    _anonymous_steps(con, requests, threads, tmap)
    narrative = Narrative(tactic_map=tmap)
    for th in sorted(threads.values(), key=_first):
        if not th.steps:
            continue
        th.members.sort(key=lambda k: (k[0], k[1] or ""))
        th.steps = _merge_same_evidence(th.steps, tmap)
        th.steps.sort(
            key=lambda s: (s.time.timestamp() if s.time else float("inf"), tmap.rank(s.tactic))
        )
        th.credential_misuse = any(k in misuse_keys for k in th.members)
        th.links = sorted({line for k in th.members for line in links.get(k, [])})
        th.attack = tmap.is_attack(th.tactics, th.credential_misuse)
        if th.attack and all(classes.get(k) in ON_BEHALF for k in th.members):
            # A controller creating a privileged pod acts for whoever wrote the Deployment:
            # the story belongs to that identity, not to the control plane.
            th.attack = False
            th.note = (
                "only control-plane or provider identities: they act on someone else's "
                "behalf (look for who created the owning object)"
            )
        (narrative.attacks if th.attack else narrative.unchained).append(th)
    for th in narrative.attacks:
        th.blast = blast_radius(con, th.members, table, requests)
    return narrative


def _merge_same_evidence(steps: list[Step], tmap: TacticMap) -> list[Step]:
    """One step per set of requests: several rules firing on the same pod creation
    (privileged, hostPID, hostPath) are one act of the attacker, told once with every
    title, technique and rule that saw it."""
    groups: dict[tuple[str, ...], list[Step]] = {}
    for st in steps:
        groups.setdefault(tuple(sorted(st.audit_ids)) or (st.origin,), []).append(st)
    out = []
    for same in groups.values():
        if len(same) == 1:
            out.append(same[0])
            continue
        same.sort(key=lambda x: (-int(x.severity), x.origin))
        techniques = tuple(dict.fromkeys(t for x in same for t in x.techniques))
        # The tactic most of the rules file the act under; on a tie, the earliest in the
        # kill chain (a CronJob in kube-system is persistence first, masquerading second).
        votes: dict[str, int] = {}
        for x in same:
            votes[x.tactic] = votes.get(x.tactic, 0) + 1
        tactic = min(votes, key=lambda t: (-votes[t], tmap.rank(t)))
        out.append(
            replace(
                same[0],
                tactic=tactic,
                tactics=tmap.tactics_of(techniques),
                techniques=techniques,
                title="; ".join(dict.fromkeys(x.title for x in same)),
                origin=", ".join(dict.fromkeys(x.origin for x in same)),
                summary=same[0].summary,
            )
        )
    return out


def _when(e: EvidenceEvent) -> tuple[float, str]:
    return (e.time.timestamp() if e.time else 0.0, e.audit_id)


def _first(th: Thread) -> float:
    times = [s.time.timestamp() for s in th.steps if s.time]
    return min(times) if times else float("inf")


def _anonymous_steps(
    con: duckdb.DuckDBPyConnection, requests: str, threads: dict[Key, Thread], tmap: TacticMap
) -> None:
    """Anonymous requests from an address that a thread's identities also used: the probe
    that preceded the intrusion, filed under initial access (T1133, the API server exposed
    to the network) unless a finding already covers them."""
    for th in threads.values():
        if not th.steps:
            continue
        anon = [k for k in th.members if k[0] in ("system:anonymous", "")]
        covered = {e.audit_id for s in th.steps for e in s.evidence}
        for actor, ip in anon:
            ids = [
                str(r[0])
                for r in con.execute(
                    f"SELECT rid FROM {requests} WHERE actor = ? "
                    "AND client_ip IS NOT DISTINCT FROM ? "
                    "ORDER BY ts LIMIT 1000",
                    [actor, ip],
                ).fetchall()
            ]
            if not ids or set(ids) <= covered:
                continue
            rows = _evidence_rows(con, requests, ids)
            evs = sorted((rows[i][1] for i in ids if i in rows), key=_when)
            refused = sum(1 for e in evs if e.response_code in (401, 403))
            techniques = ("T1133",)
            th.steps.append(
                Step(
                    time=evs[0].time if evs else None,
                    tactic=tmap.primary(techniques),
                    tactics=tmap.tactics_of(techniques),
                    techniques=techniques,
                    title="Anonymous probing of the API server",
                    severity=Severity.MEDIUM,
                    origin="reconstruction:anonymous-probing",
                    summary=f"{len(evs)} anonymous request(s) from {ip}, {refused} refused",
                    actors=[actor or "(no identity)"],
                    evidence=evs[:MAX_EVIDENCE],
                    evidence_total=len(evs),
                    audit_ids=[e.audit_id for e in evs[:MAX_IDS]],
                    outcome=_outcome(evs),
                )
            )
