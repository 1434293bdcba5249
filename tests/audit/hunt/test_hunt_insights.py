"""The CloudWatch Logs Insights queries podmortem prints: parsed by a parser of the documented
syntax (insights_query.py, itself checked on the documentation's own examples) and run by its
evaluator over each built-in rule's positive and negative examples (EKS writes native audit
events, so the examples are the log events as they are).

The evaluator implements the documented meaning (``=~``/``like`` search, comparisons,
``ispresent``, ``stats ... by bin()``) plus two readings the documentation leaves open: a
comparison on a field the event lacks is false, and regular expressions are RE2. It is run
here, not in AWS.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hunt_cases import all_builtin_plans, builtin_rules, hostile_rules, queries, sigmahq_rules
from insights_query import Field, Func, InsightsSyntaxError, parse, run

from podmortem.audit.hunt import plan_hunt
from podmortem.audit.hunt.insights import MAX_QUERY

TARGET = "insights"
STREAM = "kube-apiserver-audit-0123456789abcdef"

# Examples of the "CloudWatch Logs Insights language query syntax" documentation.
DOC_EXAMPLES = [
    "fields @timestamp, @message | filter (range>3000) | sort @timestamp desc | limit 20",
    "fields @timestamp, @message\n| filter (range>3000 and accountId=123456789012)"
    "\n| sort @timestamp desc\n| limit 20",
    "fields f1, f2, f3 | filter (duration>2000)",
    "filter (duration>2000)",
    "fields f1, f2 | filter (f1=10 or f3>25)",
    "fields f1 | filter statusCode like /2\\d\\d/",
    "stats avg (f1) by f2",
    "fields f1, f2, f3 | sort f1 desc",
    "fields f1, f2 | sort @timestamp desc | limit 25",
    "fields f1, f2, f3 | filter f1 like /Exception/",
    "fields f1, f2, f3 | filter f1 =~ /Exception/",
    'fields f1, f2, f3 | filter f1 like "Exception"',
    "fields f1, f2, f3 | filter f1 like /(?i)Exception/",
    "fields f1, f2, f3 | filter f1 =~ /^(?i)Exception$/",
    "stats avg(f1) as myAvgF1 | sort myAvgF1 desc",
    "stats count(*) by bin(1h)",
    "fields `foo-bar`, action | filter ispresent(action) # a comment",
    'filter f1 in ["a", "b"] and not f2 in [1, 2]',
]
NOT_QUERIES = [
    "filter",
    "fields a |",
    "filter a =~",
    "sort",
    "limit x",
    "filter (a = 1",
    "filtr a = 1",
    "filter foo-bar = 1",
    "filter a_b = 1",  # `_` needs backticks
    "filter a = 1 | stats count(*) by",
    "filter nosuchfn(a)",
]


def test_documented_examples_parse() -> None:
    for text in DOC_EXAMPLES:
        parse(text)


def test_malformed_queries_are_refused() -> None:
    for text in NOT_QUERIES:
        with pytest.raises(InsightsSyntaxError):
            parse(text)


def test_documented_evaluation_rules() -> None:
    event = {"f1": "an Exception here", "n": 3, "stageTimestamp": "2026-11-20T10:00:00Z"}
    assert run(parse("filter f1 =~ /Exception/"), [event], STREAM)  # a search
    assert not run(parse("filter f1 =~ /^Exception$/"), [event], STREAM)
    assert run(parse("filter f1 =~ /(?i)EXCEPTION/"), [event], STREAM)
    assert run(parse('filter f1 like "Exception"'), [event], STREAM)
    assert run(parse("filter n > 2 and not missing = 1"), [event], STREAM)
    assert not run(parse("filter missing != 1"), [event], STREAM)
    assert not run(parse("filter ispresent(missing)"), [event], STREAM)


def _check(text: str) -> None:
    assert len(text) <= MAX_QUERY
    cmds = parse(text)
    assert cmds[0].name in ("fields", "filter")
    run(cmds, [{"verb": "get", "stageTimestamp": "2026-11-20T10:00:00Z"}], STREAM)


def test_every_generated_query_parses() -> None:
    n = 0
    for name, plan in all_builtin_plans().items():
        if name.startswith("eks"):
            for text in queries(plan, TARGET).values():
                _check(text)
                n += 1
    assert n >= 3 * 45
    hostile = queries(plan_hunt("eks", hostile_rules()), TARGET)
    assert len(hostile) == 1
    for text in hostile.values():
        _check(text)


def test_sigmahq_queries_parse() -> None:
    rules = sigmahq_rules()
    if rules is None:
        pytest.skip("SigmaHQ rules of the public corpus not present")
    got = queries(plan_hunt("eks", rules), TARGET)
    assert len(got) >= 10
    for text in got.values():
        _check(text)


def _examples(path: str) -> dict[str, tuple[dict[str, Any], bool]]:
    doc = yaml.safe_load(Path(path).read_text("utf-8"))
    out = {}
    for kind in ("positive", "negative"):
        for i, e in enumerate((doc.get("examples") or {}).get(kind) or []):
            if isinstance(e, dict) and "repeat" not in e:
                out[f"{kind}-{i}"] = (e, kind == "positive")
    return out


def test_queries_select_the_rule_examples() -> None:
    plan = all_builtin_plans()["eks"]
    tested = 0
    for h in plan.hunts:
        q = h.queries[0]
        if h.rule.correlation is not None or q.query is None:
            continue
        examples = _examples(h.rule.path)
        if not examples:
            continue
        cmds = parse(q.query)
        tested += 1
        for iid, (event, want) in examples.items():
            got = bool(run(cmds, [event], STREAM))
            assert got == want, (h.rule.rule_id, iid)
        # the log stream filter: the same events in another stream of the group are not read
        pos = [e for e, want in examples.values() if want]
        assert not run(cmds, pos, "kube-controller-manager-0123"), h.rule.rule_id
    assert tested >= 40


def test_correlation_counts_in_windows() -> None:
    plan = plan_hunt("eks", builtin_rules(), rule_ids=["k8s_secret_enumeration"])
    q = plan.hunts[0].queries[0].query
    assert q is not None
    cmds = parse(q)
    stats = next(c for c in cmds if c.name == "stats")
    assert stats.by[0][0] == Func("bin", stats.by[0][0].args) and stats.by[1][0] == Field(
        "user.username"
    )
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
    rows = run(cmds, events, STREAM)
    assert [(r["user.username"], r["n"]) for r in rows] == [("alice@example.com", 12.0)]
    # spread over two 10-minute buckets, the burst falls below the threshold (the notes say so)
    late = [
        dict(e, stageTimestamp=(base + timedelta(minutes=5 + i)).isoformat())
        for i, e in enumerate(events[: pos["repeat"]])
    ]
    assert run(cmds, late, STREAM) == []
    assert any("fixed 600s buckets" in n for n in plan.hunts[0].queries[0].notes)


def test_hostile_values_match_only_themselves() -> None:
    text = queries(plan_hunt("eks", hostile_rules()), TARGET)
    cmds = parse(next(iter(text.values())))
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
    for user, want in users.items():
        assert bool(run(cmds, [{**base, "user": {"username": user}}], STREAM)) == want, user
    excluded = {
        **base,
        "user": {"username": "x') OR 1=1 --"},
        "userAgent": 'a/b" \x20/',
        "annotations": {"authorization.k8s.io/reason": 'has "quoted" `tick` inside'},
    }
    assert not run(cmds, [excluded], STREAM)
    assert run(cmds, [{**excluded, "annotations": {"authorization.k8s.io/reason": "x"}}], STREAM)
