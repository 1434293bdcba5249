"""Attacker activity reconstruction from normalized audit events: who did what, from where,
with which credential, in what order.

::

    from podmortem.audit.reconstruct import reconstruct
    rec = reconstruct(con, findings)        # con holds the audit_events table
    rec.to_dict()   # actors, identity_graph, credentials, sessions, narrative, gaps

Modules, in the order data flows through them: ``requests`` (one row per request),
``origins`` (pod and node addresses the log reveals), ``credentials`` (KEP-4193 token
following, stolen-token use), ``identity`` (the identity graph), ``sessions``,
``narrative`` (threads, kill chain by ATT&CK tactic, ``blast`` radius), ``gaps`` (provider
evidence gaps), ``pivots`` (actor / object / credential questions over a case's index) and
``timeline`` (Timesketch export).
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct import credentials, gaps, identity, narrative, origins, requests
from podmortem.audit.reconstruct.credentials import CredentialChain
from podmortem.audit.reconstruct.gaps import Gap
from podmortem.audit.reconstruct.identity import IdentityGraph
from podmortem.audit.reconstruct.narrative import Narrative
from podmortem.audit.reconstruct.sessions import DEFAULT_GAP_S, Session, sessions
from podmortem.audit.reconstruct.tactics import TacticMap
from podmortem.findings import Caveat, Finding


@dataclass(slots=True)
class Reconstruction:
    requests: int = 0
    graph: IdentityGraph = field(default_factory=IdentityGraph)
    credentials: list[CredentialChain] = field(default_factory=list)
    credential_stats: dict[str, int] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    sessions_total: int = 0
    narrative: Narrative = field(default_factory=Narrative)
    gaps: list[Gap] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def caveats(self) -> list[Caveat]:
        return [g.caveat() for g in self.gaps]

    def sections(self) -> dict[str, Any]:
        """The sections ``audit analyze --json`` gains."""
        d = self.to_dict()
        return {
            k: d[k]
            for k in (
                "actors",
                "identity_graph",
                "credentials",
                "sessions",
                "sessions_total",
                "narrative",
                "gaps",
            )
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "actors": [a.to_dict() for a in self.graph.actors],
            "identity_graph": self.graph.to_dict(),
            "credentials": [c.to_dict() for c in self.credentials],
            "credential_stats": {**self.credential_stats, "reported": len(self.credentials)},
            "sessions": [s.to_dict() for s in self.sessions],
            "sessions_total": self.sessions_total,
            "narrative": self.narrative.to_dict(),
            "gaps": [g.to_dict() for g in self.gaps],
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


def reconstruct(
    con: duckdb.DuckDBPyConnection,
    findings: Sequence[Finding] = (),
    *,
    table: str = TABLE,
    policy: ActorPolicy | None = None,
    session_gap_s: int = DEFAULT_GAP_S,
    tactic_map: TacticMap | None = None,
    persist: bool = False,
) -> Reconstruction:
    """Reconstruct attacker activity from the events in ``table`` and the engine's findings.

    ``persist`` keeps the request table and the pod/node addresses in the database (a
    case index), where the pivots find them ready."""
    requests.check_table(table)
    rec = Reconstruction()
    clock = _time.perf_counter
    t = clock()
    rec.requests = requests.materialize(con, table, policy, persist=persist)
    rec.seconds["requests"] = clock() - t
    t = clock()
    where = origins.learn(con, table, use_saved=False)
    if persist:
        origins.save(con, where)
    rec.credentials = credentials.follow(con, table, origins=where, stats=rec.credential_stats)
    rec.seconds["credentials"] = clock() - t
    t = clock()
    found, truncated = identity.actors(con, table)
    rec.graph = identity.build_graph(found, rec.credentials, truncated)
    rec.seconds["identity"] = clock() - t
    t = clock()
    rec.narrative = narrative.build(
        con, list(findings), rec.credentials, where, table=table, tmap=tactic_map
    )
    rec.seconds["narrative"] = clock() - t
    t = clock()
    involved = sorted({a for th in rec.narrative.attacks for a, _ in th.members})
    rec.sessions, rec.sessions_total = sessions(con, gap_s=session_gap_s, actors=involved)
    rec.seconds["sessions"] = clock() - t
    t = clock()
    rec.gaps = gaps.gaps(con, table)
    rec.seconds["gaps"] = clock() - t
    return rec


__all__ = ["Reconstruction", "reconstruct"]
