"""Sessions: an actor's requests from one address, split where they pause.

A session is keyed by actor and client address: a stolen service-account token used from
the internet is a different session from the pod's own use of it, though the username is
the same. A new session starts after ``gap`` seconds without a request. Exec and attach
requests carry the command the API server logged (``?command=`` of the request URI, or
GKE's ``command.gke.io/command`` label), the container and the pod; keystrokes typed into
an interactive shell are never in an audit log, and the output says so.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from podmortem.audit.reconstruct.requests import REQUESTS, first_distinct

DEFAULT_GAP_S = 1800
MAX_SESSIONS = 2000
MAX_EXECS = 200  # per session
DEFAULT_CLASSES = ("human", "workload", "anonymous")


@dataclass(frozen=True, slots=True)
class ExecCommand:
    time: datetime | None
    audit_id: str
    namespace: str | None
    pod: str | None
    container: str | None
    subresource: str
    command: tuple[str, ...]
    interactive: bool
    response_code: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat() if self.time else None,
            "audit_id": self.audit_id,
            "pod": f"{self.namespace}/{self.pod}",
            "container": self.container,
            "subresource": self.subresource,
            "command": list(self.command),
            "interactive": self.interactive,
            "response_code": self.response_code,
        }


@dataclass(slots=True)
class Session:
    actor: str
    actor_class: str
    client_ip: str | None
    start: datetime | None
    end: datetime | None
    requests: int
    forbidden: int
    verbs: dict[str, int]
    resources: dict[str, int]
    user_agents: list[str]
    credentials: list[str]
    execs: list[ExecCommand] = field(default_factory=list)
    exec_total: int = 0

    @property
    def key(self) -> str:
        return f"{self.actor}@{self.client_ip}@{self.start.isoformat() if self.start else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "actor_class": self.actor_class,
            "client_ip": self.client_ip,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "duration_s": (self.end - self.start).total_seconds()
            if self.start and self.end
            else None,
            "requests": self.requests,
            "forbidden": self.forbidden,
            "verbs": self.verbs,
            "resources": self.resources,
            "user_agents": self.user_agents,
            "credentials": self.credentials,
            "execs": [e.to_dict() for e in self.execs],
            "exec_total": self.exec_total,
            "keystrokes": "not logged: an audit log records the command an exec starts, "
            "never what is typed into it"
            if any(e.interactive for e in self.execs)
            else None,
        }


def sessions(
    con: duckdb.DuckDBPyConnection,
    requests: str = REQUESTS,
    *,
    gap_s: int = DEFAULT_GAP_S,
    classes: tuple[str, ...] = DEFAULT_CLASSES,
    actors: list[str] | None = None,
    where: str | None = None,
    params: list[object] | None = None,
) -> tuple[list[Session], int]:
    """Sessions of the actors of ``classes`` (and of the named ``actors``, whatever their
    class); returns the sessions (at most ``MAX_SESSIONS``, earliest first) and the total."""
    if gap_s <= 0:
        raise ValueError("session gap must be positive")
    if where is None:
        where = (
            "(actor_class IN (SELECT unnest(?::VARCHAR[]))"
            " OR actor IN (SELECT unnest(?::VARCHAR[])))"
        )
        params = [list(classes), list(actors or [])]
    gap_us = int(gap_s) * 1_000_000
    sql = f"""
    WITH r AS (
        -- The exec details are carried for exec and attach requests only: for a busy
        -- controller they are most of the bytes otherwise.
        SELECT actor, actor_class, client_ip, ts, verb, obj_resource, obj_subresource,
               response_code, user_agent, credential_id,
               CASE WHEN obj_subresource IN ('exec', 'attach') THEN
                   struct_pack(ts := ts, rid := rid, ns := obj_namespace, pod := obj_name,
                               c := exec_container, sub := obj_subresource,
                               cmd := exec_command, q := request_uri, code := response_code)
               END AS ex,
               CAST(floor(epoch_us(ts) / {gap_us}) AS BIGINT) AS b
        FROM {requests} WHERE {where}
    ), bk AS (
        -- Buckets one gap wide: two requests in the same bucket are at most a gap apart,
        -- so a session never breaks inside one, only between a bucket's last request and
        -- the next non-empty bucket's first. The windows then sort buckets, not requests
        -- (a controller's 176k requests a day are 48 buckets at the default gap); the
        -- answer is the same as comparing every request with the one before it.
        SELECT actor, client_ip, b, min(ts) AS b0, max(ts) AS b1 FROM r GROUP BY ALL
    ), bs AS (
        SELECT actor, client_ip, b,
               CASE WHEN epoch_us(b0) - lag(epoch_us(b1)) OVER w > {gap_us}
                    THEN 1 ELSE 0 END AS brk
        FROM bk WINDOW w AS (PARTITION BY actor, client_ip ORDER BY b)
    ), bsid AS (
        SELECT actor, client_ip, b, sum(brk) OVER (PARTITION BY actor, client_ip ORDER BY b
                                                   ROWS UNBOUNDED PRECEDING) AS sid
        FROM bs
    ), s AS (
        SELECT r.*, bsid.sid FROM r JOIN bsid
          ON r.actor = bsid.actor AND r.client_ip IS NOT DISTINCT FROM bsid.client_ip
         AND r.b IS NOT DISTINCT FROM bsid.b
    ), g AS (
        SELECT actor, any_value(actor_class) AS cls, client_ip, sid, min(ts) AS t0, max(ts) AS t1,
               count(*) AS n, count(*) FILTER (response_code IN (401, 403)) AS nf,
               histogram(verb) AS verbs, histogram(obj_resource) AS res,
               {first_distinct("user_agent", 10)} AS uas,
               {first_distinct("credential_id", 10)} AS creds,
               list_slice(list(ex ORDER BY ts, ex) FILTER (ex IS NOT NULL), 1, {MAX_EXECS})
                 AS execs,
               count(*) FILTER (obj_subresource IN ('exec', 'attach')) AS nexec
        FROM s GROUP BY actor, client_ip, sid
    )
    SELECT *, count(*) OVER () FROM g ORDER BY t0, actor, client_ip LIMIT {MAX_SESSIONS}
    """
    rows = con.execute(sql, params or []).fetchall()
    total = int(rows[0][-1]) if rows else 0
    out = []
    for r in rows:
        execs = [
            ExecCommand(
                time=e["ts"],
                audit_id=str(e["rid"]),
                namespace=e["ns"],
                pod=e["pod"],
                container=e["c"],
                subresource=str(e["sub"]),
                command=tuple(str(c) for c in e["cmd"] or ()),
                interactive=_interactive(e["q"]),
                response_code=e["code"],
            )
            for e in r[12] or []
        ]
        out.append(
            Session(
                actor=str(r[0]),
                actor_class=str(r[1]),
                client_ip=r[2],
                start=r[4],
                end=r[5],
                requests=int(r[6]),
                forbidden=int(r[7]),
                verbs={str(k): int(v) for k, v in (r[8] or {}).items() if k is not None},
                resources={str(k): int(v) for k, v in (r[9] or {}).items() if k is not None},
                user_agents=[str(x) for x in r[10] or []],
                credentials=[str(x) for x in r[11] or []],
                execs=execs,
                exec_total=int(r[13]),
            )
        )
    return out, total


def _interactive(uri: str | None) -> bool:
    """``stdin=true`` (and usually ``tty=true``) in the exec URI: a shell someone typed into.
    GKE has no URI; its label holds only the command, so interactivity is unknown (False)."""
    if not uri or "?" not in uri:
        return False
    query = uri.split("?", 1)[1].lower()
    return "stdin=true" in query.split("&") or "stdin=1" in query.split("&")
