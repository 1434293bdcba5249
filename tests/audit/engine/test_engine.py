"""Engine behaviour: grouping, suppression, severity by actor class, error isolation,
correlation windows."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from audit_rows import make_table

from podmortem.audit import engine
from podmortem.audit.ruleset import RuleSet, load_builtin, load_files
from podmortem.findings import Severity

BUILTIN = load_builtin()
T0 = datetime(2026, 11, 20, 10, 0, 0)


def _only(*rule_ids: str) -> RuleSet:
    by_id = {r.rule_id: r for r in BUILTIN.rules}
    rules = [by_id[i] for i in rule_ids]
    for r in list(rules):
        if r.correlation:
            rules += [x for x in BUILTIN.rules if x.key in r.correlation.rules]
    return RuleSet(rules=rules)


def ev(
    n: int,
    *,
    user: str = "alice",
    groups: tuple[str, ...] = (),
    seconds: float = 0,
    stage: str = "ResponseComplete",
    **kw: Any,
) -> dict[str, Any]:
    ts = (T0 + timedelta(seconds=seconds)).isoformat() + "Z"
    e: dict[str, Any] = {
        "auditID": f"00000000-0000-0000-0000-{n:012d}",
        "stage": stage,
        "user": {"username": user, "groups": list(groups)},
        "sourceIPs": ["203.0.113.9"],
        "stageTimestamp": ts,
        "requestReceivedTimestamp": ts,
        "responseStatus": {"code": 200},
    }
    e.update(kw)
    return e


def secret_delete(n: int, name: str, **kw: Any) -> dict[str, Any]:
    return ev(
        n, verb="delete", objectRef={"resource": "secrets", "namespace": "prod", "name": name}, **kw
    )


def test_findings_grouped_per_rule_actor_object_with_all_audit_ids() -> None:
    events = [secret_delete(i, "db") for i in range(3)] + [secret_delete(9, "api")]
    # the same request logged at two stages counts once
    events.append(secret_delete(0, "db", stage="ResponseStarted"))
    res = engine.run(make_table(events), _only("k8s_secret_deleted"))
    by_obj = {f.extra["object"]: f for f in res.findings}
    assert set(by_obj) == {"secrets prod/db", "secrets prod/api"}
    db = by_obj["secrets prod/db"]
    assert db.extra["requests"] == 3
    assert sorted(db.extra["audit_ids"]) == [f"00000000-0000-0000-0000-{i:012d}" for i in range(3)]
    assert db.severity is Severity.MEDIUM and db.extra["actor_class"] == "human"
    assert db.time is not None and db.time.year == 2026


def test_expected_behaviour_of_system_actors_is_counted_not_reported() -> None:
    ctrl = "system:serviceaccount:kube-system:namespace-controller"
    events = [secret_delete(i, f"s{i}", user=ctrl) for i in range(5)] + [secret_delete(7, "x")]
    res = engine.run(make_table(events), _only("k8s_secret_deleted"))
    assert [f.subject for f in res.findings] == ["alice"]
    assert len(res.suppressed) == 1
    s = res.suppressed[0]
    assert (s.actor, s.actor_class, s.requests) == (ctrl, "control-plane", 5)


def test_anonymous_actor_raises_severity() -> None:
    anon = ev(
        1,
        user="system:anonymous",
        groups=("system:unauthenticated",),
        verb="list",
        requestURI="/api/v1/secrets",
        objectRef={"resource": "secrets"},
    )
    res = engine.run(make_table([anon]), _only("k8s_secret_list"))
    assert res.findings[0].severity is Severity.HIGH  # medium rule, +1 for anonymous
    assert res.findings[0].extra["base_level"] == "medium"


def test_regex_re2_cannot_run_is_reported_by_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(
        "title: good\nlogsource: {product: kubernetes, service: audit}\n"
        "detection: {sel: {verb: delete}, condition: sel}\nlevel: low\n"
    )
    bad = tmp_path / "bad.yml"
    # RE2 (DuckDB's regex engine) has no backreferences
    bad.write_text(
        "title: bad\nlogsource: {product: kubernetes, service: audit}\n"
        "detection: {sel: {verb|re: '(a)\\1'}, condition: sel}\n"
    )
    rs = load_files([good, bad], "custom")
    assert [e.path for e in rs.errors] == [str(bad)]
    assert [r.title for r in rs.rules] == ["good"]


def test_rule_that_fails_at_run_time_is_isolated() -> None:
    good = next(r for r in BUILTIN.rules if r.rule_id == "k8s_secret_deleted")
    broken = replace(
        good, key="custom:broken", rule_id="broken", path="broken.yml", sql="no_such_function(verb)"
    )
    res = engine.run(make_table([secret_delete(1, "db")]), RuleSet(rules=[broken, good]))
    assert [e.path for e in res.runtime_errors] == ["broken.yml"]
    assert [f.rule_id for f in res.findings] == ["k8s_secret_deleted"]


def forbidden(
    n: int, seconds: float, user: str = "system:serviceaccount:default:web"
) -> dict[str, Any]:
    return ev(
        n,
        user=user,
        seconds=seconds,
        verb="list",
        responseStatus={"code": 403},
        objectRef={"resource": "secrets", "namespace": f"ns{n}"},
    )


def test_burst_across_a_bucket_boundary_is_found_by_the_sliding_window() -> None:
    # 20 forbidden requests between 10:02:30 and 10:07:15: no fixed 5-minute bucket holds 20
    events = [forbidden(i, 150 + i * 15) for i in range(20)]
    res = engine.run(make_table(events), _only("k8s_forbidden_burst"))
    [f] = [f for f in res.findings if f.rule_id == "k8s_forbidden_burst"]
    assert f.extra["peak"] == 20 and f.extra["requests"] == 20
    assert f.subject == "system:serviceaccount:default:web"
    assert f.severity is Severity.HIGH
    assert len(f.extra["audit_ids"]) == 20


def test_no_burst_when_spread_out() -> None:
    events = [forbidden(i, i * 20) for i in range(20)]  # 20 over 380 s: at most 16 per 5 min
    res = engine.run(make_table(events), _only("k8s_forbidden_burst"))
    assert not [f for f in res.findings if f.rule_id == "k8s_forbidden_burst"]


def test_burst_excludes_expected_actors_and_says_so() -> None:
    node = "system:node:ip-10-0-0-1"
    events = [forbidden(i, i, user=node) for i in range(30)]
    res = engine.run(make_table(events), _only("k8s_forbidden_burst"))
    assert not [f for f in res.findings if f.rule_id == "k8s_forbidden_burst"]
    assert any(s.actor == node and s.requests == 30 for s in res.suppressed)


def test_value_count_counts_distinct_values() -> None:
    reads = [
        ev(
            i,
            verb="get",
            seconds=i,
            objectRef={"resource": "secrets", "namespace": "p", "name": f"s{i % 12}"},
        )
        for i in range(24)
    ]
    res = engine.run(make_table(reads), _only("k8s_secret_enumeration"))
    [f] = [f for f in res.findings if f.rule_id == "k8s_secret_enumeration"]
    assert f.extra["peak"] == 12
    same = [
        ev(
            i,
            verb="get",
            seconds=i,
            objectRef={"resource": "secrets", "namespace": "p", "name": "one"},
        )
        for i in range(24)
    ]
    res = engine.run(make_table(same), _only("k8s_secret_enumeration"))
    assert not [f for f in res.findings if f.rule_id == "k8s_secret_enumeration"]


def test_referenced_base_rules_do_not_report_on_their_own() -> None:
    res = engine.run(make_table([forbidden(1, 0)]), _only("k8s_forbidden_burst"))
    assert res.hits_per_rule == {"k8s_forbidden_request": 1}
    assert res.findings == []


def test_whole_builtin_ruleset_on_an_empty_table() -> None:
    res = engine.run(make_table([]), BUILTIN)
    assert res.findings == [] and res.runtime_errors == []


def test_findings_per_rule_are_capped_and_the_rest_counted(monkeypatch: Any) -> None:
    monkeypatch.setattr(engine, "MAX_FINDINGS_PER_RULE", 2)
    events = [secret_delete(i, f"s{i}") for i in range(5)]
    res = engine.run(make_table(events), _only("k8s_secret_deleted"))
    assert len(res.findings) == 2
    assert res.capped == {"k8s_secret_deleted": 3}
