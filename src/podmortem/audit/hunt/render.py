"""The hunt plan as text: per rule, each language's query (or why there is none) and how to
run it. Titles, ids, paths and reasons come from rule files (possibly third-party) and pass
through :func:`for_plain`; queries are printable ASCII by construction (values.py) and are
printed as they are, so they can be copied."""

from __future__ import annotations

from podmortem.audit.hunt.plan import HuntPlan
from podmortem.escape import for_plain

RUN = {
    "insights": (
        "aws logs start-query --log-group-name /aws/eks/{cluster}/cluster"
        " --start-time {start} --end-time $(date +%s) --query-string file://query.txt"
    ),
    "kql-aksaudit": (
        "az monitor log-analytics query --workspace WORKSPACE_ID --analytics-query @query.kql"
    ),
    "kql-azurediagnostics": (
        "az monitor log-analytics query --workspace WORKSPACE_ID --analytics-query @query.kql"
    ),
    "gke-logging": 'gcloud logging read "$(cat filter.txt)" --project PROJECT --format=json',
    "gke-bigquery": "bq query --use_legacy_sql=false < query.sql",
}


def run_command(target: str, plan: HuntPlan) -> str:
    since = plan.since
    if since is None:
        start = "$(date -d '-24 hours' +%s)"
    elif since.seconds is not None:
        start = f"$(date -d '-{since.seconds} seconds' +%s)"
    else:
        start = str(since.epoch)
    return RUN[target].format(cluster=plan.cluster or "CLUSTER", start=start)


def render_text(plan: HuntPlan) -> str:
    out: list[str] = []
    n_q = sum(1 for h in plan.hunts for q in h.queries if q.query)
    n_all = sum(len(h.queries) for h in plan.hunts)
    out.append(
        f"# podmortem audit hunt {plan.provider}: {len(plan.hunts)} rule(s),"
        f" {n_q} of {n_all} queries expressible"
        + (f", since {plan.since.rfc3339}" if plan.since else "")
        + (f", cluster {for_plain(plan.cluster, 100)}" if plan.cluster else "")
    )
    for err in plan.errors:
        out.append(f"# rule not loaded: {for_plain(err.path, 300)}: {for_plain(err.reason, 300)}")
    for h in plan.hunts:
        r = h.rule
        out.append("")
        out.append(f"## {for_plain(r.rule_id, 200)} [{r.level}] {for_plain(r.title, 200)}")
        if r.techniques:
            out.append(f"#  ATT&CK: {', '.join(r.techniques)}")
        for q in h.queries:
            out.append(f"### {q.language}")
            if q.query is None:
                out.append(f"not expressible: {for_plain(q.reason, 600)}")
            else:
                out.append(f"# run: {run_command(q.target, plan)}")
                out.append(q.query)
            for note in q.notes:
                out.append(f"# note: {for_plain(note, 400)}")
    return "\n".join(out) + "\n"
