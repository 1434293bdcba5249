"""The KQL podmortem prints, run by an evaluator of the emitted subset (kql_eval.py: the
meaning the KQL reference gives each operator and function; not a Kusto engine) over AKSAudit
and AzureDiagnostics rows made from each built-in rule's positive and negative examples.
test_hunt_kql_parse.py proves the same queries are valid KQL for Microsoft's own service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hunt_cases import NOW, all_builtin_plans, builtin_rules, hostile_rules, queries
from kql_eval import KqlError, parse, run_query

from podmortem.audit.hunt import plan_hunt

FLAVOURS = ("kql-aksaudit", "kql-azurediagnostics")


def test_the_evaluator_reads_kql_as_documented() -> None:
    event = {"verb": "get", "stageTimestamp": "2026-11-20T10:00:00Z", "user": {"username": "A"}}
    base = "union isfuzzy=true AKSAudit, AKSAuditAdmin | where "
    assert run_query(base + 'tostring(User.username) =~ "a"', [event])  # =~ ignores case
    assert not run_query(base + 'tostring(User.username) == "a"', [event])
    assert run_query(base + 'tostring(User.username) matches regex @"^A"', [event])  # search
    assert not run_query(base + 'tostring(User.missing) matches regex @"^x"', [event])
    # tostring() of a missing value is "", which `.*` matches: why presence is tested
    assert run_query(base + 'tostring(User.missing) matches regex @"^.*$"', [event])
    assert not run_query(base + "isnotnull(User.missing)", [event])
    assert run_query(base + "not(coalesce(tostring(User.x) == 1, false))", [event])
    with pytest.raises(KqlError):
        run_query(base + "NoSuchColumn == 1", [event])


def _examples(path: str) -> dict[str, tuple[dict[str, Any], bool]]:
    doc = yaml.safe_load(Path(path).read_text("utf-8"))
    out = {}
    for kind in ("positive", "negative"):
        for i, e in enumerate((doc.get("examples") or {}).get(kind) or []):
            if isinstance(e, dict) and "repeat" not in e:
                out[f"{kind}-{i}"] = (e, kind == "positive")
    return out


@pytest.mark.parametrize("target", FLAVOURS)
def test_queries_select_the_rule_examples(target: str) -> None:
    plan = all_builtin_plans()["aks"]
    tested = 0
    for h in plan.hunts:
        q = next(q for q in h.queries if q.target == target)
        if h.rule.correlation is not None or q.query is None:
            continue
        examples = _examples(h.rule.path)
        if not examples:
            continue
        parse(q.query)
        tested += 1
        for iid, (event, want) in examples.items():
            assert bool(run_query(q.query, [event])) == want, (target, h.rule.rule_id, iid)
    assert tested >= 50


@pytest.mark.parametrize("target", FLAVOURS)
def test_since_and_cluster_restrict_the_rows(target: str) -> None:
    plan = plan_hunt(
        "aks", builtin_rules(), rule_ids=["k8s_secret_read"], since="24h", cluster="prod", now=NOW
    )
    q = next(q for q in plan.hunts[0].queries if q.target == target).query
    assert q is not None
    event = {
        "verb": "get",
        "stage": "ResponseComplete",
        "user": {"username": "alice@example.com"},
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db"},
    }
    inside = {**event, "stageTimestamp": "2026-11-19T12:00:00Z"}
    before = {**event, "stageTimestamp": "2026-11-19T11:59:59Z"}
    assert run_query(q, [inside], now=NOW)
    assert not run_query(q, [before], now=NOW)
    assert not run_query(q, [inside], cluster="staging", now=NOW)
    assert not run_query(q, [inside], cluster="xprod", now=NOW)


@pytest.mark.parametrize("target", FLAVOURS)
def test_correlation_counts_in_windows(target: str) -> None:
    plan = plan_hunt("aks", builtin_rules(), rule_ids=["k8s_secret_enumeration"])
    q = next(q for q in plan.hunts[0].queries if q.target == target).query
    assert q is not None
    doc = yaml.safe_load(Path(plan.hunts[0].rule.path).read_text("utf-8"))
    pos = doc["examples"]["positive"][0][0]
    neg = doc["examples"]["negative"][0][0]
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    events = []
    for i in range(pos["repeat"]):
        e = dict(pos["event"])
        e["objectRef"] = {**e["objectRef"], "name": f"secret-{i}"}
        e["auditID"] = f"p{i}"
        e["stageTimestamp"] = (base + timedelta(seconds=2 * i)).isoformat()
        events.append(e)
    for i in range(30):  # the same secret read thirty times: no enumeration
        e = dict(neg["event"])
        e["user"] = {"username": "bob@example.com"}
        e["auditID"] = f"n{i}"
        e["stageTimestamp"] = (base + timedelta(seconds=2 * i)).isoformat()
        events.append(e)
    rows = run_query(q, events)
    assert [(r["g0"], r["n"]) for r in rows] == [("alice@example.com", 12)]


def test_duplicate_exports_are_one_row() -> None:
    """A write exported under both categories (or in both tables) is returned once."""
    event = {
        "auditID": "a1",
        "stage": "ResponseComplete",
        "verb": "get",
        "user": {"username": "u"},
        "objectRef": {"resource": "secrets", "namespace": "p", "name": "n"},
        "stageTimestamp": "2026-11-20T10:00:00Z",
    }
    plan = plan_hunt("aks", builtin_rules(), rule_ids=["k8s_secret_read"])
    for q in plan.hunts[0].queries:
        assert q.query is not None
        assert len(run_query(q.query, [event, dict(event)])) == 1, q.target


def test_hostile_values_match_only_themselves() -> None:
    plan = plan_hunt("aks", hostile_rules())
    users = {
        "a'b\"c\\d|e": True,
        "x') OR 1=1 --": True,
        'y" or true | where 1==1 //': True,
        "line1\nline2": True,
        "/etc/passwd.bak": True,
        "TAB\there": True,
        "caf\u00e9 \u2028 /x": True,
        "someone-else": False,
        "line1": False,
        "a'b\"c\\d|": False,
    }
    base = {
        "verb": "get",
        "stage": "ResponseComplete",
        "objectRef": {"resource": "pods", "namespace": "p", "name": "n"},
        "stageTimestamp": "2026-11-20T10:00:00Z",
    }
    for target in FLAVOURS:
        text = next(iter(queries(plan, target).values()))
        for i, (user, want) in enumerate(users.items()):
            event = {**base, "auditID": str(i), "user": {"username": user}}
            assert bool(run_query(text, [event])) == want, (target, user)
        excluded = {
            **base,
            "user": {"username": "x') OR 1=1 --"},
            "userAgent": 'a/b" \x20/',
            "annotations": {"authorization.k8s.io/reason": 'has "quoted" `tick` inside'},
        }
        assert not run_query(text, [excluded])
        other = {**excluded, "annotations": {"authorization.k8s.io/reason": "x"}}
        assert run_query(text, [other])
