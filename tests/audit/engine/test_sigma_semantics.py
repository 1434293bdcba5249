"""Sigma semantics of the DuckDB compilation, one behaviour per test, on hand-made events."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from audit_rows import make_table, sigma_conditions
from hypothesis import given, settings
from hypothesis import strategies as st
from sigma.rule import SigmaRule

from podmortem.audit.fieldmap import FieldMap, UnknownFieldError
from podmortem.audit.sigma import CompileError, compile_rule

FIELDS = FieldMap.default()


def _rule(detection: str) -> SigmaRule:
    text = (
        "title: t\nlogsource: {product: kubernetes, service: audit}\ndetection:\n"
        + textwrap.indent(textwrap.dedent(detection).strip(), "  ")
        + "\n"
    )
    return SigmaRule.from_yaml(text)


def matches(detection: str, *events: dict[str, Any]) -> list[bool]:
    """For each event, whether the rule matches it."""
    sql = compile_rule(_rule(detection), FIELDS).sql
    con = make_table(events)
    query = f"SELECT source_line FROM audit_events WHERE {sql}"  # noqa: S608 - compiled rule
    hit = {r[0] for r in con.execute(query).fetchall()}
    return [i + 1 in hit for i in range(len(events))]


def ev(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"auditID": "a", "stage": "ResponseComplete", "verb": "get"}
    base.update(kw)
    return base


def test_strings_compare_case_insensitively() -> None:
    det = "sel: {user.username: Alice}\ncondition: sel"
    users = [ev(user={"username": u}) for u in ("alice", "ALICE", "bob")]
    assert matches(det, *users) == [True, True, False]


def test_lowercase_api_fields_take_rule_values_in_any_case() -> None:
    # verbs and resources are lower case by the API's definition: the rule's value is lowered
    det = "sel: {verb: CREATE, objectRef.resource: [Pods, secrets]}\ncondition: sel"
    events = [ev(verb="create", objectRef={"resource": r}) for r in ("pods", "secrets", "nodes")]
    assert matches(det, *events) == [True, True, False]


def test_value_lists_grouped_into_one_test_keep_their_meaning() -> None:
    det = (
        "sel:\n  userAgent|contains: [peirates, 'kube-hunter', 'a.b']\n"
        "  user.username: [Alice, 'bob*', 'c?rol']\ncondition: sel"
    )
    e = [
        ev(userAgent="Peirates/1.1", user={"username": "alice"}),
        ev(userAgent="x kube-hunter y", user={"username": "bobby"}),
        ev(userAgent="a.b", user={"username": "carol"}),
        ev(userAgent="axb", user={"username": "alice"}),  # '.' is literal
        ev(userAgent="peirates", user={"username": "caarol"}),  # ? is one character
        ev(userAgent="kubectl", user={"username": "alice"}),
    ]
    assert matches(det, *e) == [True, True, True, False, False, False]


def test_cased_modifier_is_case_sensitive() -> None:
    det = "sel: {verb|cased: create}\ncondition: sel"
    assert matches(det, ev(verb="create"), ev(verb="Create")) == [True, False]


def test_wildcards_and_string_modifiers() -> None:
    det = "sel: {requestURI|contains: '/exec?'}\ncondition: sel"
    assert matches(det, ev(requestURI="/api/v1/x/exec?command=sh"), ev(requestURI="/api")) == [
        True,
        False,
    ]
    det = "sel: {user.username|startswith: 'system:node:'}\ncondition: sel"
    assert matches(det, ev(user={"username": "system:node:n1"}), ev(user={"username": "x"})) == [
        True,
        False,
    ]
    det = "sel: {user.username: 'eks:*'}\ncondition: sel"
    assert matches(det, ev(user={"username": "eks:x"}), ev(user={"username": "xeks:"})) == [
        True,
        False,
    ]


def test_like_metacharacters_in_values_are_literal() -> None:
    det = "sel: {objectRef.name: 'a_b%c'}\ncondition: sel"
    objs = [{"resource": "pods", "name": n} for n in ("a_b%c", "axbyc", "a_b%cd")]
    assert matches(det, *(ev(objectRef=o) for o in objs)) == [True, False, False]


def test_list_valued_field_matches_any_element() -> None:
    det = "sel: {sourceIPs: '10.0.0.*'}\ncondition: sel"
    assert matches(det, ev(sourceIPs=["1.2.3.4", "10.0.0.9"]), ev(sourceIPs=["1.2.3.4"])) == [
        True,
        False,
    ]
    det = "sel: {user.groups: system:masters}\ncondition: sel"
    assert matches(det, ev(user={"username": "u", "groups": ["a", "system:masters"]}), ev()) == [
        True,
        False,
    ]


def test_nested_arrays_in_request_body() -> None:
    pod = {
        "spec": {
            "containers": [{"name": "a"}, {"name": "b", "securityContext": {"privileged": True}}]
        }
    }
    det = "sel: {requestObject.spec.containers.securityContext.privileged: true}\ncondition: sel"
    assert matches(
        det, ev(requestObject=pod), ev(requestObject={"spec": {"containers": [{}]}})
    ) == [True, False]


def test_pod_spec_alias_reaches_workload_templates() -> None:
    deploy = {"spec": {"template": {"spec": {"hostPID": True, "containers": [{"image": "xmrig"}]}}}}
    cron = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostPID": True}}}}}}
    det = "sel: {podSpec.hostPID: true}\ncondition: sel"
    assert matches(
        det, ev(requestObject=deploy), ev(requestObject=cron), ev(requestObject={"spec": {}})
    ) == [True, True, False]
    det = "sel: {image|contains: xmrig}\ncondition: sel"
    assert matches(det, ev(requestObject=deploy), ev(requestObject=cron)) == [True, False]


def test_sigmahq_exists_wildcard_on_aliases() -> None:
    with_path = {"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}}
    without = {"spec": {"volumes": [{"name": "e", "emptyDir": {}}]}}
    det = "sel: {hostPath: '*'}\ncondition: sel"
    assert matches(det, ev(requestObject=with_path), ev(requestObject=without), ev()) == [
        True,
        False,
        False,
    ]
    caps = {"spec": {"containers": [{"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]}}
    det = "sel: {capabilities: '*'}\ncondition: sel"
    assert matches(
        det, ev(requestObject=caps), ev(requestObject={"spec": {"containers": [{}]}})
    ) == [True, False]


def test_exists_modifier_and_null() -> None:
    det = "sel: {objectRef.subresource|exists: true}\ncondition: sel"
    e1 = ev(objectRef={"resource": "pods", "subresource": "exec"})
    e2 = ev(objectRef={"resource": "pods"})
    assert matches(det, e1, e2) == [True, False]
    det = "sel: {objectRef.subresource: null}\ncondition: sel"
    assert matches(det, e1, e2) == [False, True]


def test_not_over_an_absent_field_is_true() -> None:
    det = "sel: {verb: get}\nflt: {objectRef.namespace: kube-system}\ncondition: sel and not flt"
    assert matches(det, ev(), ev(objectRef={"resource": "pods", "namespace": "kube-system"})) == [
        True,
        False,
    ]


def test_one_of_and_all_of_selections() -> None:
    det = "sel_a: {verb: create}\nsel_b: {verb: get}\ncondition: 1 of sel_*"
    assert matches(det, ev(verb="create"), ev(verb="get"), ev(verb="list")) == [True, True, False]
    det = "sel_a: {verb: get}\nsel_b: {stage: ResponseComplete}\ncondition: all of sel_*"
    assert matches(det, ev(), ev(stage="RequestReceived")) == [True, False]


def test_all_modifier_on_list_field() -> None:
    det = "sel: {user.groups|all: [a, b]}\ncondition: sel"
    assert matches(
        det,
        ev(user={"username": "u", "groups": ["a", "b"]}),
        ev(user={"username": "u", "groups": ["a"]}),
    ) == [True, False]


def test_numeric_comparison_and_integer_field() -> None:
    det = "sel: {responseStatus.code|gte: 400}\ncondition: sel"
    assert matches(det, ev(responseStatus={"code": 403}), ev(responseStatus={"code": 200})) == [
        True,
        False,
    ]
    det = "sel: {responseStatus.code: 403}\ncondition: sel"
    assert matches(det, ev(responseStatus={"code": 403}), ev(responseStatus={"code": 200})) == [
        True,
        False,
    ]


def test_string_on_integer_field_never_matches_and_warns() -> None:
    compiled = compile_rule(_rule("sel: {responseStatus.code: ALLOW}\ncondition: sel"), FIELDS)
    assert compiled.sql == "FALSE"
    assert "never match" in compiled.warnings[0]


def test_regular_expression() -> None:
    det = "sel: {userAgent|re: '^kubectl/v1\\.(2|3)[0-9]'}\ncondition: sel"
    assert matches(det, ev(userAgent="kubectl/v1.30.1"), ev(userAgent="curl/8")) == [True, False]


def test_cidr() -> None:
    det = "sel: {sourceIPs|cidr: 10.0.0.0/8}\ncondition: sel"
    assert matches(det, ev(sourceIPs=["10.2.3.4"]), ev(sourceIPs=["11.0.0.1"])) == [True, False]


def test_keyword_searches_the_original_record() -> None:
    det = "keywords: [xmrig]\ncondition: keywords"
    assert matches(det, ev(userAgent="XMRig/6"), ev()) == [True, False]


def test_annotation_keys_with_dots_and_slashes() -> None:
    det = "sel: {annotations.authorization.k8s.io/decision: forbid}\ncondition: sel"
    forbid = ev(annotations={"authorization.k8s.io/decision": "forbid"})
    assert matches(det, forbid, ev(annotations={"authorization.k8s.io/decision": "allow"})) == [
        True,
        False,
    ]


def test_user_extra_credential_id_list() -> None:
    det = "sel: {user.extra.authentication.kubernetes.io/credential-id: 'JTI=*'}\ncondition: sel"
    e1 = ev(
        user={"username": "u", "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]}}
    )
    assert matches(det, e1, ev()) == [True, False]


def test_fieldref() -> None:
    det = "sel: {objectRef.name|fieldref: objectRef.namespace}\ncondition: sel"
    assert matches(
        det,
        ev(objectRef={"resource": "namespaces", "name": "a", "namespace": "a"}),
        ev(objectRef={"resource": "namespaces", "name": "a", "namespace": "b"}),
    ) == [True, False]


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(UnknownFieldError):
        compile_rule(_rule("sel: {EventID: 4688}\ncondition: sel"), FIELDS)


def test_hostile_field_names_are_refused() -> None:
    with pytest.raises(UnknownFieldError):
        FIELDS.resolve("requestObject.a'); DROP TABLE x; --")
    with pytest.raises(UnknownFieldError):
        FIELDS.resolve('annotations.a"b')


def test_placeholders_are_refused() -> None:
    with pytest.raises(CompileError):
        compile_rule(_rule("sel: {user.username|expand: '%admins%'}\ncondition: sel"), FIELDS)


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_characters="\x00*?", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=30,
    )
)
def test_any_literal_value_matches_itself_only(value: str) -> None:
    """Quotes, backslashes, % and _ in a rule value are literal text (escaped into LIKE and
    SQL), so the value matches an equal value and not a modified one."""
    import yaml

    det = (
        "sel:\n  userAgent: "
        + yaml.safe_dump(value, default_style='"').strip()
        + "\ncondition: sel"
    )
    assert matches(det, ev(userAgent=value), ev(userAgent=value + "x")) == [True, False]


def test_contains_list_searches_without_anchors() -> None:
    """A list of `contains` values is one unanchored RE2 search: case-insensitive, a dot
    is a dot, a wildcard inside a value still spans."""
    det = "sel: {userAgent|contains: ['Kube-Hunter', 'a.b', 'x*y']}\ncondition: sel"
    agents = ["my kube-hunter/1", "axb", "a.b", "x then y", "y then x", "line1\nx\ny"]
    assert matches(det, *(ev(userAgent=a) for a in agents)) == [
        True,
        False,
        True,
        True,
        False,
        True,
    ]


# ------------------------------------------------------------------ JSON-column guards

_BODY_ATOMS = {
    "pid": "podSpec.hostPID: true",
    "img": "image|contains: xmrig",
    "any": "requestObject.spec.replicas: '*'",
    "nul": "requestObject.spec.replicas: null",
    "gone": "requestObject.spec.replicas|exists: false",
    "ann": "annotations.authorization.k8s.io/decision: allow",
    "verb": "verb: delete",
    "ns": "objectRef.namespace: kube-system",
}
_GUARD_EVENTS = [
    ev(verb="delete"),
    ev(verb="create", requestObject={"spec": {"hostPID": True}}),
    ev(verb="create", requestObject={"spec": {"containers": [{"image": "xmrig:1"}]}}),
    ev(verb="patch", requestObject={"spec": {"replicas": 0}}),
    ev(verb="delete", objectRef={"resource": "pods", "namespace": "kube-system"}),
    ev(annotations={"authorization.k8s.io/decision": "allow"}),
    ev(verb="create", requestObject={"metadata": {"name": "x"}}),
]


def _unguarded(detection: str) -> str:
    from podmortem.audit.sigma import _Compiler

    comp = _Compiler(FIELDS)
    parts = [comp.node(c.parsed) for c in _rule(detection).detection.parsed_condition]
    return "(" + " OR ".join(parts) + ")"


def _detection(condition: str) -> str:
    sels = "\n".join(f"{k}: {{{v}}}" for k, v in _BODY_ATOMS.items())
    return f"{sels}\ncondition: {condition}"


def test_a_json_column_every_match_needs_is_tested_first() -> None:
    sql = compile_rule(_rule(_detection("pid and verb")), FIELDS).sql
    assert sql.startswith('("request_object" IS NOT NULL AND ')
    # both alternatives read the body: still needed
    assert compile_rule(_rule(_detection("pid or img")), FIELDS).sql.startswith(
        '("request_object" IS NOT NULL AND '
    )
    for condition in ("pid or verb", "not pid", "nul", "gone", "verb and not img"):
        assert "IS NOT NULL AND" not in compile_rule(_rule(_detection(condition)), FIELDS).sql
    # a test for an absent value matches events without a body
    assert matches(_detection("nul and verb"), *_GUARD_EVENTS)[0]


_CONDITIONS = sigma_conditions(list(_BODY_ATOMS))


@settings(max_examples=60, deadline=None)
@given(_CONDITIONS)
def test_guards_never_change_what_a_rule_matches(condition: str) -> None:
    det = _detection(condition)
    con = make_table(_GUARD_EVENTS)
    guarded = compile_rule(_rule(det), FIELDS).sql
    rows = "SELECT source_line FROM audit_events WHERE {} ORDER BY 1"
    got = con.execute(rows.format(guarded)).fetchall()
    assert got == con.execute(rows.format(_unguarded(det))).fetchall(), guarded
