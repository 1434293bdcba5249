"""The Cloud Logging filters podmortem prints: parsed by a parser of the documented grammar
(logging_filter.py, itself checked on the documentation's own examples), and evaluated over
LogEntry JSON made from each built-in rule's positive and negative examples, the GKE shape
the BigQuery test uses (bq_duckdb.sink_row) in the form Cloud Logging returns it.

The evaluator implements the documented semantics (missing fields fail comparisons, arrays
match on any element, string ``=`` ignores case, RE2 search); it is a reading of Google's
documentation run here, not Google's service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bq_duckdb import log_entry
from hunt_cases import (
    GKE_BLIND,
    NOW,
    all_builtin_plans,
    builtin_rules,
    hostile_rules,
    queries,
    sigmahq_rules,
)
from logging_filter import (
    And,
    Call,
    Compare,
    FilterSyntaxError,
    Global,
    Not,
    Or,
    Value,
    evaluate,
    parse,
)

from podmortem.audit.hunt import plan_hunt

TARGET = "gke-logging"

# Examples from the "Logging query language" documentation, with the tree each must give.
DOC_EXAMPLES = [
    'resource.type = "gce_instance" AND severity >= "ERROR" AND NOT textPayload:robot',
    'labels."compute.googleapis.com/resource_id"="1234"',
    'jsonPayload.":name":apple',
    'jsonPayload."foo.bar":apple',
    'jsonPayload."\\"foo\\"":apple',
    'jsonPayload.cat = ("longhair" OR "shorthair")',
    'jsonPayload.animal : ("nice" AND "pet")',
    "operation.id:*",
    "jsonPayload.field = NULL_VALUE",
    'log_id("cloudaudit.googleapis.com/activity")',
    'logName = "projects/my-project/logs/syslog" AND sample(insertId, 0.25)',
    'ip_in_net(jsonPayload.realClientIP, "10.1.2.0/24")',
    'cast(timestamp, STRING, TIMEZONE("America/New_York")) =~ "^2023-01-02.*"',
    'CAST(REGEXP_EXTRACT(CAST(timestamp, STRING), "\\\\d+:\\\\d+:\\\\d+\\\\.(\\\\d+)"),'
    " INT64) < 500",
    "source(projects/PROJECT_ID)",
    'SEARCH(textPayload, "hello world")',
    'resource.type = "gce_instance" -- Looking for logs from "alex".\n'
    'jsonPayload.targetUser = "alex"',
    'resource.type = ("gae_app" OR "gce_instance")',
    'resource.type = "gae_app" AND (severity = ERROR OR "error")',
    "jsonPayload.shoeSize < 7",
    'timestamp >= "2023-11-29T23:00:00Z" AND timestamp <= "2023-11-29T23:30:00Z"',
]
NOT_FILTERS = [
    "a=",
    '(a="b"',
    '"abc',
    'a == "b"',
    'resource.type = "gae_app" AND',
    "a.=1",
    "f(",
    "a !! b",
    "NOT",
    'a = "x" OR',
    'a="\\q"',
]


def test_documented_examples_parse() -> None:
    for text in DOC_EXAMPLES:
        parse(text)


def test_precedence_is_the_documented_one() -> None:
    """NOT binds tightest, then OR, then AND; AND may be omitted; '-' is NOT."""
    assert parse('"a" OR NOT "b" AND NOT "c" OR "d"') == parse(
        '("a" OR (NOT "b")) AND ((NOT "c") OR "d")'
    )
    assert parse('a="b" AND c="d" AND NOT e="f"') == parse('a="b" c="d" -e="f"')
    tree = parse("x=1 AND y=2 OR z=3")
    assert isinstance(tree, And) and isinstance(tree.args[1], Or)
    # lower-case operators are search terms, not operators
    lower = parse('a="b" and c="d"')
    assert isinstance(lower, And) and isinstance(lower.args[1], Global)


def test_malformed_filters_are_refused() -> None:
    for text in NOT_FILTERS:
        with pytest.raises(FilterSyntaxError):
            parse(text)


def test_documented_evaluation_rules() -> None:
    entry = {"jsonPayload": {"shoeSize": [8.5, 9, 6], "name": "Alex", "n": None}}
    assert evaluate(parse("jsonPayload.shoeSize < 7"), entry)  # any element
    assert not evaluate(parse("jsonPayload.shoeSize < 6"), entry)
    assert evaluate(parse('jsonPayload.name = "alex"'), entry)  # `=` ignores case
    assert not evaluate(parse('jsonPayload.name =~ "^alex$"'), entry)  # a regex does not
    assert evaluate(parse('jsonPayload.name =~ "le"'), entry)  # a search, not a full match
    assert evaluate(parse("NOT jsonPayload.missing = foo"), entry)
    assert not evaluate(parse("jsonPayload.missing != foo"), entry)
    assert not evaluate(parse("jsonPayload.n:*"), entry)
    assert evaluate(parse("jsonPayload.name:*"), entry)


def _walk(tree: Any) -> list[Any]:
    out = [tree]
    for child in getattr(tree, "args", ()) or ():
        out += _walk(child)
    if isinstance(tree, Not):
        out += _walk(tree.arg)
    return out


def _check_filter(text: str) -> Any:
    """Parses; uses only what podmortem means to use (no global restriction, which would
    search every field; only log_id and ip_in_net as functions); evaluates."""
    tree = parse(text)
    for node in _walk(tree):
        assert not isinstance(node, Global), f"a global restriction in {text[:200]}"
        if isinstance(node, Call):
            assert node.name in ("log_id", "ip_in_net"), node.name
        if isinstance(node, Compare):
            assert isinstance(node.left, tuple)
            assert node.right == "*" or isinstance(node.right, Value), node
    evaluate(tree, log_entry({"verb": "get", "stageTimestamp": "2026-11-20T10:00:00Z"}, "x"))
    return tree


def test_every_generated_filter_parses() -> None:
    n = 0
    for name, plan in all_builtin_plans().items():
        if name.startswith("gke"):
            for text in queries(plan, TARGET).values():
                _check_filter(text)
                n += 1
    assert n >= 3 * 45
    hostile = queries(plan_hunt("gke", hostile_rules(), since="1h", cluster="c-1"), TARGET)
    assert len(hostile) == 1
    for text in hostile.values():
        _check_filter(text)


def test_sigmahq_filters_parse() -> None:
    rules = sigmahq_rules()
    if rules is None:
        pytest.skip("SigmaHQ rules of the public corpus not present")
    got = queries(plan_hunt("gke", rules), TARGET)
    assert len(got) >= 10
    for text in got.values():
        _check_filter(text)


# ------------------------------------------------------------------ executed over examples


def _examples(path: str) -> dict[str, tuple[dict[str, Any], bool]]:
    doc = yaml.safe_load(Path(path).read_text("utf-8"))
    out = {}
    for kind in ("positive", "negative"):
        for i, e in enumerate((doc.get("examples") or {}).get(kind) or []):
            # GKE writes one entry per request; a RequestReceived stage has no GKE equivalent
            if isinstance(e, dict) and e.get("stage") != "RequestReceived":
                out[f"{kind}-{i}"] = (e, kind == "positive")
    return out


def test_filters_select_the_rule_examples() -> None:
    plan = all_builtin_plans()["gke"]
    tested = 0
    for h in plan.hunts:
        q = next(q for q in h.queries if q.target == TARGET)
        if h.rule.correlation is not None or q.query is None:
            continue
        examples = _examples(h.rule.path)
        if not examples:
            continue
        tree = parse(q.query)
        tested += 1
        for iid, (event, want) in examples.items():
            got = evaluate(tree, log_entry(event, iid))
            if GKE_BLIND.get((h.rule.rule_id, iid)):
                assert got and any(n.startswith(GKE_BLIND[(h.rule.rule_id, iid)]) for n in q.notes)
                continue
            assert got == want, (h.rule.rule_id, iid, q.query[:3000])
    assert tested >= 40


def test_since_and_cluster_restrict_the_entries() -> None:
    plan = plan_hunt(
        "gke", builtin_rules(), rule_ids=["k8s_secret_read"], since="24h", cluster="prod", now=NOW
    )
    tree = parse(plan.hunts[0].queries[0].query or "")
    event = {
        "verb": "get",
        "user": {"username": "alice@example.com"},
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db"},
        "responseStatus": {"code": 200},
    }
    inside = {**event, "stageTimestamp": "2026-11-19T12:00:00Z"}  # exactly 24h before NOW
    before = {**event, "stageTimestamp": "2026-11-19T11:59:59Z"}
    assert evaluate(tree, log_entry(inside, "a", cluster="prod"))
    assert not evaluate(tree, log_entry(before, "b", cluster="prod"))
    assert not evaluate(tree, log_entry(inside, "c", cluster="staging"))


def test_hostile_values_match_only_themselves() -> None:
    plan = plan_hunt("gke", hostile_rules())
    tree = parse(queries(plan, TARGET)["0b5c5f8e-0000-4000-8000-000000000001"])
    users = {
        "a'b\"c\\d|e": True,
        "x') OR 1=1 --": True,
        'y" or true | where 1==1 //': True,
        "line1\nline2": True,
        "/etc/passwd.bak": True,
        "TAB\there": True,  # Sigma compares case-insensitively
        "caf\u00e9 \u2028 /x": True,
        "someone-else": False,
        "x": False,
        "line1": False,
        "a'b\"c\\d|": False,
        "tab here": False,
    }
    base = {
        "verb": "get",
        "objectRef": {"resource": "pods", "namespace": "p", "name": "n"},
        "stageTimestamp": "2026-11-20T10:00:00Z",
    }
    for user, want in users.items():
        entry = log_entry({**base, "user": {"username": user}}, "i")
        assert evaluate(tree, entry) == want, user
    # the filter part: excluded only when both the user agent and the reason match
    hit = {**base, "user": {"username": "x') OR 1=1 --"}, "userAgent": 'a/b" \x20/'}
    entry = log_entry(hit, "i")
    entry["labels"]["authorization.k8s.io/reason"] = 'has "quoted" `tick` inside'
    assert not evaluate(tree, entry)
    entry["labels"]["authorization.k8s.io/reason"] = "other"
    assert evaluate(tree, entry)
