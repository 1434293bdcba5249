"""What the evidence could not show: provider audit policies that make some activity
structurally invisible, so that "no finding" is not misread as "did not happen".

Facts from the providers' documented policies (see shared notes, audit-formats.md): EKS and
GKE log ``events`` at level None and secrets/configmaps/tokens at Metadata only; GKE reads
are in Data Access logs, off by default; AKS ``kube-audit-admin`` drops get and list.
"""

# The table name is a plain identifier checked by the caller.
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb

from podmortem.findings import Caveat, Provenance

_PROV = Provenance(source="analysis", parser="podmortem.audit.coverage")
# Absence of reads or bodies says something about the policy only over enough events; a
# handful of events (a sample, one trace file) has none by chance.
MIN_EVENTS_FOR_ABSENCE = 50


# Per provider: events, reads, events with a request body. Plain SQL that DuckDB and Spark
# both run (the Spark engine computes the same counts over its events).
COUNTS_SQL = """SELECT provider,
                   count(*) AS n,
                   count(CASE WHEN verb IN ('get', 'list', 'watch') THEN 1 END) AS reads,
                   count(CASE WHEN request_object IS NOT NULL THEN 1 END) AS bodies
            FROM {table} GROUP BY provider"""


def blind_spots(con: duckdb.DuckDBPyConnection, table: str) -> list[Caveat]:
    return caveats_from_counts(con.execute(COUNTS_SQL.format(table=f'"{table}"')).fetchall())


def caveats_from_counts(rows: Iterable[Sequence[Any]]) -> list[Caveat]:
    """The caveats for ``(provider, events, reads, bodies)`` rows."""
    out: list[Caveat] = []
    for provider, n, reads, bodies in rows:
        p = str(provider)
        if p in ("eks", "gke"):
            out.append(
                _cav(
                    p,
                    "policy-events-invisible",
                    f"{p.upper()} audit policy logs `events` at level None: deletion of"
                    " Kubernetes events cannot be seen in these logs",
                )
            )
            out.append(
                _cav(
                    p,
                    "policy-metadata-only",
                    f"{p.upper()} logs secrets, configmaps and token requests at Metadata level:"
                    " their contents (and secret types) are not in the evidence",
                )
            )
        if int(n) >= MIN_EVENTS_FOR_ABSENCE and not int(reads):
            why = {
                "gke": "GKE Data Access logs (reads) are off by default",
                "aks": "the AKS kube-audit-admin category drops get and list",
            }.get(p, "the audit policy or the export excluded them")
            out.append(
                _cav(
                    p,
                    "no-read-events",
                    f"no get/list/watch events from {p}: reads (secret theft, discovery) are"
                    f" not visible ({why})",
                )
            )
        if int(n) >= MIN_EVENTS_FOR_ABSENCE and not int(bodies):
            out.append(
                _cav(
                    p,
                    "no-request-bodies",
                    f"no request bodies in the {p} events (level Metadata): rules on pod specs,"
                    " roles and bindings (privileged, hostPath, cluster-admin) cannot match",
                )
            )
    return out


def _cav(provider: str, kind: str, message: str) -> Caveat:
    return Caveat(kind=kind, message=message, provenance=_PROV, details={"provider": provider})
