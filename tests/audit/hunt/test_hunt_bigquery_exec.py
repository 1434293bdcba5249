"""The BigQuery SQL podmortem prints, executed (in DuckDB, lexically translated: see
bq_duckdb.py) over log-sink rows made from each built-in rule's own positive and negative
examples. Positives must be returned, negatives must not, except where GKE does not record
the field a negative example differs in (listed, and the query's notes must say so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bq_duckdb import connect, insert, run, sink_row
from hunt_cases import GKE_BLIND

from podmortem.audit.hunt import load_rules, plan_hunt


@pytest.fixture(scope="module")
def plan() -> Any:
    return plan_hunt("gke", load_rules())


def _examples(path: str) -> dict[str, tuple[dict[str, Any], bool]]:
    doc = yaml.safe_load(Path(path).read_text("utf-8"))
    out = {}
    for kind in ("positive", "negative"):
        for i, e in enumerate((doc.get("examples") or {}).get(kind) or []):
            # GKE writes one entry per request; a RequestReceived stage has no GKE equivalent
            if isinstance(e, dict) and e.get("stage") != "RequestReceived":
                out[f"{kind}-{i}"] = (e, kind == "positive")
    return out


def test_every_bigquery_query_of_the_builtin_rules_runs(plan: Any) -> None:
    con = connect()
    ran = 0
    for h in plan.hunts:
        q = h.queries[1]
        assert q.target == "gke-bigquery"
        if q.query:
            run(con, q.query)
            ran += 1
    assert ran >= 55


def test_bigquery_queries_select_the_rule_examples(plan: Any) -> None:
    tested = 0
    for h in plan.hunts:
        q = h.queries[1]
        if h.rule.correlation is not None or q.query is None:
            continue
        examples = _examples(h.rule.path)
        if not examples:
            continue
        con = connect()
        insert(con, [sink_row(e, iid) for iid, (e, _) in examples.items()])
        got = {row[1] for row in run(con, q.query)}
        tested += 1
        for iid, (_, want) in examples.items():
            blind = GKE_BLIND.get((h.rule.rule_id, iid))
            if blind:
                assert iid in got
                assert any(n.startswith(blind) for n in q.notes)
                continue
            assert (iid in got) == want, (h.rule.rule_id, iid)
    assert tested >= 50


def test_bigquery_correlation_counts_in_windows() -> None:
    plan = plan_hunt("gke", load_rules(), rule_ids=["k8s_secret_enumeration"])
    q = plan.hunts[0].queries[1]
    assert q.query is not None
    assert "TIMESTAMP_BUCKET(timestamp, INTERVAL 600 SECOND)" in q.query
    doc = yaml.safe_load(Path(plan.hunts[0].rule.path).read_text("utf-8"))
    pos = doc["examples"]["positive"][0][0]
    con = connect()
    rows = []
    from datetime import UTC, datetime, timedelta

    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    for i in range(pos["repeat"]):
        e = dict(pos["event"])
        e["objectRef"] = {**e["objectRef"], "name": f"secret-{i}"}
        e["stageTimestamp"] = (base + timedelta(seconds=2 * i)).isoformat()
        rows.append(sink_row(e, f"p{i}"))
    # the same secret read thirty times: one distinct value, no enumeration
    neg = doc["examples"]["negative"][0][0]
    for i in range(30):
        e = dict(neg["event"])
        e["user"] = {"username": "bob@example.com"}
        e["stageTimestamp"] = (base + timedelta(seconds=2 * i)).isoformat()
        rows.append(sink_row(e, f"n{i}"))
    insert(con, rows)
    result = run(con, q.query)
    assert [(r[1], r[2]) for r in result] == [("alice@example.com", 12)]
