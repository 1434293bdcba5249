"""``podmortem audit actor|object|credential|timeline``: pivots and the Timesketch export over
the audit events a case holds (``podmortem audit analyze --case`` puts them there)."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from podmortem.errors import InputError
from podmortem.escape import for_terminal

if TYPE_CHECKING:
    from collections.abc import Iterator

    import duckdb

    from podmortem.audit.reconstruct import Reconstruction
    from podmortem.audit.reconstruct.pivots import PivotResult

console = Console(highlight=False)

CaseOpt = Annotated[
    Path | None, typer.Option("--case", help="Case folder whose index holds the audit events.")
]
IndexOpt = Annotated[
    Path | None,
    typer.Option(
        "--index", help="A DuckDB file holding an audit_events table (instead of --case)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the full answer as JSON.")]
LimitOpt = Annotated[
    int,
    typer.Option(
        "--limit",
        min=0,
        help="Timeline: the first and last N requests and up to N notable ones"
        " (refused, writes, exec, secrets); the rest is counted and summarised.",
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every request in the timeline (no --limit).")]


def register(audit_app: typer.Typer) -> None:
    audit_app.command("actor")(actor_cmd)
    audit_app.command("object")(object_cmd)
    audit_app.command("credential")(credential_cmd)
    audit_app.command("timeline")(timeline_cmd)


@contextmanager
def _index(case_dir: Path | None, index: Path | None) -> Iterator[duckdb.DuckDBPyConnection]:
    import duckdb

    if case_dir is not None and index is None:
        from podmortem.case import Case

        path = Case.open(case_dir).index_path
    elif index is not None and case_dir is None:
        path = index
    else:
        raise InputError("give exactly one of --case or --index")
    if not path.is_file():
        raise InputError(f"no audit index at {path}: run podmortem audit analyze --case first")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise InputError(
            f"cannot open the index {path}: {' '.join(str(exc).split())[:300]}"
        ) from exc
    try:
        yield con
    finally:
        con.close()


def _show(res: PivotResult, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
        return
    console.print(
        f"[bold]{res.kind}[/] {for_terminal(res.query, 300)}: {res.requests_total} request(s)"
        f" ({res.seconds:.3f} s)"
    )
    if res.summary:
        sm = res.summary

        def _top(h: dict[str, int]) -> str:
            return ", ".join(f"{for_terminal(k, 60)} {v}" for k, v in list(h.items())[:8])

        console.print(
            f"  {sm['first']} .. {sm['last']}; verbs: {_top(sm['verbs'])}; outcomes:"
            f" {_top(sm['outcomes'])}; {sm['client_ip_count']} address(es),"
            f" {sm['user_agent_count']} user agent(s), {sm['credential_count']} credential(s)"
        )
        console.print(f"  resources: {_top(sm['resources'])}")
    for a in res.actors[:20]:
        cloud = ", ".join(f"{k}={v[0]}" for k, v in a.cloud.items() if v)
        console.print(
            f"  actor {for_terminal(a.name, 200)} ({a.actor_class}) {a.requests} request(s),"
            f" {a.forbidden} refused, from {for_terminal(', '.join(a.client_ips[:5]), 200)}"
            + (f"; {for_terminal(cloud, 300)}" if cloud else "")
        )
    for c in res.credentials[:10]:
        flag = "[red]MISUSED[/] " if c.misused else ""
        issued = (
            f"issued by {for_terminal(c.issue.requester, 200)} at {c.issue.time} ({c.issue_link})"
            if c.issue
            else "issuance not in the log"
        )
        target = c.bound_pod or c.bound_node
        bound = f"; bound to {for_terminal(target, 200)}" if target else ""
        console.print(f"  {flag}credential {for_terminal(c.credential_id, 200)}: {issued}{bound}")
        for u in c.uses[:20]:
            console.print(
                f"    used by {for_terminal(u.actor, 200)} from {for_terminal(u.client_ip, 60)}"
                f" x{u.requests} ({for_terminal(u.user_agent, 80)})"
                + "".join(f"\n      [red]![/] {for_terminal(r, 300)}" for r in u.reasons)
            )
    for s in res.sessions[:20]:
        console.print(
            f"  session {s.start} .. {s.end} from {for_terminal(s.client_ip, 60)}:"
            f" {s.requests} request(s), {s.forbidden} refused"
        )
        for e in s.execs[:10]:
            console.print(
                f"    exec {for_terminal(f'{e.namespace}/{e.pod}', 200)}"
                f" [{for_terminal(e.container or '?', 60)}]"
                f" $ {for_terminal(' '.join(e.command), 300)}"
            )
    for b in res.blast[:10]:
        if b.reach:
            console.print(
                f"  reach of {for_terminal(b.actor, 200)} from {for_terminal(b.client_ip, 60)}:"
            )
            for cat, acts in sorted(b.reach.items()):
                for act, objs in sorted(acts.items()):
                    console.print(
                        f"    {cat} {act}: {for_terminal(', '.join(objs[:8]), 400)}"
                        + (f" (+{len(objs) - 8})" if len(objs) > 8 else "")
                    )
    if res.readers_by_list:
        console.print(f"  could have been read by {len(res.readers_by_list)} list/watch group(s):")
        for g in res.readers_by_list[:10]:
            console.print(
                f"    {for_terminal(g['actor'], 200)} {g['verb']}"
                f" in {for_terminal(g['scope'], 100)} x{g['requests']}"
            )
    if res.timeline:
        table = Table(box=None, pad_edge=False)
        for col in ("time (UTC)", "actor", "from", "verb", "object", "code"):
            table.add_column(col, overflow="fold")
        for r in res.timeline:
            obj = r.object + (" $ " + " ".join(r.command) if r.command else "")
            table.add_row(
                (r.time or "")[:23],
                for_terminal(r.actor, 80),
                for_terminal(r.client_ip or "", 40),
                for_terminal(r.verb or "", 20),
                for_terminal(obj, 160),
                str(r.response_code if r.response_code is not None else ""),
            )
        console.print(table)
        if res.requests_total > len(res.timeline):
            console.print(
                f"  {len(res.timeline)} of {res.requests_total} request(s) shown: the first and"
                f" last {res.limit}, and {min(res.notable_total, res.limit or 0)} of"
                f" {res.notable_total} notable; {res.requests_total - len(res.timeline)} left"
                " out (--limit N, --all)"
            )


def actor_cmd(  # noqa: PLR0917 - Typer maps each parameter to an option
    name: Annotated[str, typer.Argument(help="Username, e.g. system:serviceaccount:shop:web.")],
    case_dir: CaseOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = 50,
    all_: AllOpt = False,
    gap: Annotated[
        int, typer.Option("--gap", min=1, help="Seconds of silence that end a session.")
    ] = 1800,
) -> None:
    """Everything one actor did: identity, sessions, credentials, reach, requests."""
    from podmortem.audit.reconstruct.pivots import actor

    with _index(case_dir, index) as con:
        _show(actor(con, name, limit=None if all_ else limit, gap_s=gap), as_json)


def object_cmd(  # noqa: PLR0917 - Typer maps each parameter to an option
    spec: Annotated[
        str,
        typer.Argument(help="NAMESPACE/RESOURCE/NAME, or RESOURCE/NAME for cluster scope."),
    ],
    case_dir: CaseOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = 50,
    all_: AllOpt = False,
) -> None:
    """Every request on one object, and the lists that could have returned it."""
    from podmortem.audit.reconstruct.pivots import object_

    with _index(case_dir, index) as con:
        _show(object_(con, spec, limit=None if all_ else limit), as_json)


def credential_cmd(  # noqa: PLR0917 - Typer maps each parameter to an option
    cid: Annotated[str, typer.Argument(help="JTI=..., X509SHA256=..., or a service-account name.")],
    case_dir: CaseOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = 50,
    all_: AllOpt = False,
) -> None:
    """One credential from its TokenRequest to every use, with stolen-token checks."""
    from podmortem.audit.reconstruct.pivots import credential

    with _index(case_dir, index) as con:
        _show(credential(con, cid, limit=None if all_ else limit), as_json)


def timeline_cmd(  # noqa: PLR0917 - Typer maps each parameter to an option
    case_dir: CaseOpt = None,
    index: IndexOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv (Timesketch).")] = "jsonl",
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write, or - for standard output. With --case"
            " and no --output, the export is stored in the case as an artifact.",
        ),
    ] = None,
    actor_name: Annotated[
        str | None, typer.Option("--actor", help="Only this actor's requests.")
    ] = None,
    no_tags: Annotated[
        bool, typer.Option("--no-tags", help="Skip tagging narrative steps.")
    ] = False,
) -> None:
    """Export the audit timeline (one line per request) for Timesketch."""
    from podmortem.audit.reconstruct import timeline

    if fmt not in timeline.FORMATS:
        raise typer.BadParameter("jsonl or csv", param_hint="--format")
    if output is None and case_dir is None:
        raise InputError("give --output (a file or -) or --case")
    where, params = ("TRUE", [])
    if actor_name is not None:
        where, params = "coalesce(username, '') = ?", [actor_name]
    with _index(case_dir, index) as con:
        tags = {} if no_tags else _tags(con)
        if output == "-":
            n = timeline.write(sys.stdout, fmt, con, where=where, params=params, tags=tags)
            return
        if output is not None:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                n = timeline.write(fh, fmt, con, where=where, params=params, tags=tags)
            console.print(f"{n} event(s) written to {for_terminal(output)}")
            return
        n = _into_case(case_dir, con, fmt=fmt, where=where, params=params, tags=tags)
    console.print(f"{n} event(s) exported into the case")


def _tags(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Narrative tags from the case's stored audit findings (none stored: no tags)."""
    from podmortem.audit.reconstruct import reconstruct
    from podmortem.audit.reconstruct.timeline import narrative_tags
    from podmortem.findings import Finding

    findings: list[Finding] = []
    has = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'findings'"
    ).fetchone()
    if has and has[0]:
        for row in con.execute(
            "SELECT rule_id, title, severity, techniques, time, subject, summary, evidence, extra"
            " FROM findings WHERE analysis = 'audit'"
        ).fetchall():
            findings.append(
                Finding.from_dict(
                    {
                        "rule_id": row[0],
                        "title": row[1],
                        "severity": row[2],
                        "techniques": row[3],
                        "time": row[4].isoformat() if row[4] else None,
                        "subject": row[5],
                        "summary": row[6],
                        "evidence": row[7],
                        "extra": json.loads(row[8]) if row[8] else {},
                    }
                )
            )
    rec = reconstruct(con, findings)
    return narrative_tags(rec.narrative.to_dict())


class _Utf8Sink:
    """Text in, UTF-8 bytes out to a case artifact writer (which hashes as it streams, so
    the export never sits whole in memory)."""

    def __init__(self, w: Any) -> None:
        self._w = w

    def write(self, text: str) -> int:
        self._w.write(text.encode("utf-8"))
        return len(text)


def _into_case(
    case_dir: Path | None,
    con: duckdb.DuckDBPyConnection,
    *,
    fmt: str,
    where: str,
    params: list[Any],
    tags: dict[str, list[str]],
) -> int:
    from podmortem.audit.reconstruct import timeline
    from podmortem.case import Case

    if case_dir is None:
        raise InputError("--case is needed to store the export in a case")
    case = Case.open(case_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"exports/audit-timeline-{stamp}.{fmt}"
    with case.artifact(name, source="analysis", command=f"audit timeline --format {fmt}") as w:
        n = timeline.write(_Utf8Sink(w), fmt, con, where=where, params=params, tags=tags)  # type: ignore[arg-type]
    case.log_action("analysis_run", {"analysis": "audit-timeline", "artifact": name, "events": n})
    return n


TOP_STEPS = 30


def print_reconstruction(out: Console, rec: Reconstruction) -> None:
    """The narrative in a few lines, for ``audit analyze``'s terminal summary."""
    nar = rec.narrative
    misused = [c for c in rec.credentials if c.misused]
    for c in misused[:5]:
        bad = [u for u in c.uses if u.misused]
        out.print(
            f"[red]stolen credential[/] {for_terminal(c.credential_id, 120)}"
            f" of {for_terminal(c.subject, 120)}: used from"
            f" {for_terminal(', '.join(sorted({str(u.client_ip) for u in bad})), 200)}"
            + (f", issued by {for_terminal(c.issue.requester, 120)}" if c.issue else "")
        )
    if not nar.attacks:
        out.print(
            f"\n[bold]no attack narrative[/]: {len(nar.unchained)} group(s) of findings show"
            " no progression past a single tactic (listed in --json under narrative.unchained)"
        )
    for n, th in enumerate(nar.attacks, 1):
        who = ", ".join(f"{a}@{ip}" for a, ip in th.members)
        out.print(f"\n[bold red]attack {n}[/] by {for_terminal(who, 400)}")
        for st in th.steps[:TOP_STEPS]:
            when = st.time.strftime("%H:%M:%S") if st.time else "?"
            out.print(
                f"  {when} [cyan]{st.tactic:20}[/] {for_terminal(st.title, 90)}"
                f" ({st.evidence_total} request(s){', refused' if st.outcome == 'refused' else ''})"
            )
        if len(th.steps) > TOP_STEPS:
            out.print(f"  ... {len(th.steps) - TOP_STEPS} more step(s) in --json")
    if rec.gaps:
        ids = sorted({g.gap_id for g in rec.gaps})
        out.print(f"evidence gaps: {', '.join(ids)} (what the logs could not show; see --json)")
