"""The Spark SQL dialect of the rule compiler against the DuckDB one, rule by rule and row by
row: every built-in and SigmaHQ rule over the same rows (the test fixtures, every rule's own
examples, and events made to hit the places where the two SQL engines differ: JSON null
against an absent key, quotes and backslashes, a newline before the end of a value, list
fields, numbers written as strings) must match exactly the same rows in both engines."""

from __future__ import annotations

import copy
import importlib.util
import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spark_support import spark  # noqa: F401 - the session fixture

from podmortem.audit.model import COLUMNS, TABLE
from podmortem.audit.ruleset import RuleSet, builtin_rules_dir, load_builtin, load_dir
from podmortem.audit.sources import load
from podmortem.audit.spark.engine import matched_events, spark_predicates
from podmortem.audit.spark.read import EVENT_DDL, FI, ORD

pytestmark = pytest.mark.spark

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _builders() -> ModuleType:
    path = HERE / "engine" / "audit_rows.py"
    spec = importlib.util.spec_from_file_location("podmortem_test_audit_rows_spark", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _examples() -> list[dict[str, Any]]:
    out = []
    for path in sorted(builtin_rules_dir().glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        if "correlation" in doc:
            continue
        for kind in ("positive", "negative"):
            out += [e for e in doc["examples"][kind] if isinstance(e, dict)]
    return out


def _pod(spec: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": top.pop("auditID", "edge"),
        "stage": "ResponseComplete",
        "verb": "create",
        "requestURI": "/api/v1/namespaces/default/pods",
        "user": {"username": top.pop("user", "mallory"), "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.9"],
        "userAgent": top.pop("userAgent", "kubectl/v1.30.0"),
        "objectRef": {"resource": "pods", "namespace": "default", "name": top.pop("name", "p")},
        "responseStatus": {"code": 201},
        "requestObject": {"kind": "Pod", "spec": spec},
        "requestReceivedTimestamp": "2024-05-01T10:00:00.000000Z",
        "stageTimestamp": "2024-05-01T10:00:00.100000Z",
        **top,
    }


def _edges() -> list[dict[str, Any]]:
    c = {"name": "c", "image": "busybox"}
    return [
        # JSON null against an absent key, at the end of a list path
        _pod({"containers": [{**c, "securityContext": {"privileged": None}}]}, auditID="e1"),
        _pod({"containers": [{**c, "securityContext": {}}, c]}, auditID="e2"),
        _pod({"containers": [{**c, "securityContext": {"privileged": "true"}}]}, auditID="e3"),
        _pod({"containers": [{**c, "securityContext": {"privileged": True}}]}, auditID="e4"),
        _pod({"containers": "not-a-list", "hostPID": "true"}, auditID="e5"),
        _pod({"containers": [None, 1, "x", [c]], "hostNetwork": 1}, auditID="e6"),
        _pod(
            {"volumes": [{"name": "v", "hostPath": {"path": None}}], "containers": [c]},
            auditID="e7",
        ),
        _pod(
            {"volumes": [{"name": "v", "hostPath": {"path": "/"}}], "containers": [c]}, auditID="e8"
        ),
        _pod(
            {"containers": [{**c, "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]},
            auditID="e9",
        ),
        _pod(
            {"containers": [{**c, "securityContext": {"capabilities": {"add": "SYS_ADMIN"}}}]},
            auditID="e10",
        ),
        # quotes, backslashes, a newline before the end, case
        _pod({"containers": [{**c, "image": "xmrig\\'\n"}]}, auditID="e11", name="a'b\\c"),
        _pod({"containers": [{**c, "image": "XMRig/XMRIG:latest"}]}, auditID="e12"),
        _pod({"containers": [c]}, auditID="e13", userAgent="python-requests/2.31\n"),
        _pod({"containers": [c]}, auditID="e14", userAgent="PYTHON-REQUESTS/2.31"),
        _pod({"containers": [c]}, auditID="e15", user="system:anonymous"),
        _pod({"containers": [{**c, "image": "İmage"}]}, auditID="e16"),
    ]


# Sigma features the built-in rules do not all use, one rule each: the semantics where the two
# SQL engines differ most (presence against JSON null, list fields, regular expressions,
# case, numbers, CIDR, keywords over the original record).
CUSTOM = {
    "exists_in_list": "containers.securityContext.privileged|exists: true",
    "absent_in_list": "containers.securityContext.privileged|exists: false",
    "null_in_list": "containers.securityContext.privileged: null",
    "exists_scalar": "podSpec.hostPID|exists: true",
    "null_scalar": "podSpec.hostNetwork: null",
    "regex_list": "containers.image|re: '^[a-z]+\\\\?.*$'",
    "regex_ci": "userAgent|re|i: 'python-requests/[0-9.]+$'",
    "cased": "containers.image|cased: 'XMRig/XMRIG:latest'",
    "endswith": "userAgent|endswith: '2.31'",
    "wildcards": "containers.image|contains|all: ['x', 'i']",
    "many_patterns": "userAgent|startswith: ['python', 'curl', 'kubectl', 'PYTHON-']",
    "number_text": "podSpec.hostNetwork: 1",
    "compare": "responseStatus.code|gte: 201",
    "cidr": "sourceIPs|cidr: '203.0.113.0/24'",
    "quote": 'objectRef.name: "a\'b\\\\c"',
    "bool_text": "containers.securityContext.privileged: 'true'",
    "caps": "containers.securityContext.capabilities.add: 'SYS_ADMIN'",
    "keyword": "keywords_placeholder",
}


def _custom_dir(tmp: Path) -> Path:
    for name, sel in CUSTOM.items():
        if name == "keyword":
            detection = "keywords:\n    - 'xmrig'\n  condition: keywords"
        else:
            detection = f"selection:\n    {sel}\n  condition: selection"
        (tmp / f"{name}.yml").write_text(
            f"title: {name}\nname: {name}\n"
            f"status: test\nlevel: low\nlogsource:\n  product: kubernetes\n  service: audit\n"
            f"detection:\n  {detection}\n"
        )
    return tmp


def _rules(tmp: Path | None = None) -> RuleSet:
    rules = load_builtin()
    if tmp is not None:
        custom = load_dir(_custom_dir(tmp), "custom")
        assert custom.errors == [], custom.errors
        assert len(custom.rules) == len(CUSTOM)
        rules.extend(custom)
    env = os.environ.get("PODMORTEM_CORPUS")
    corpus = Path(env) if env else (REPO / ".." / "shared" / "corpus").resolve()
    sigma = corpus / "k8s-audit" / "sigma-rules"
    if sigma.is_dir():
        rules.extend(load_dir(sigma, "sigma"))
    return rules


def _table() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    load(con, [str(HERE / "fixtures")])
    builders = _builders()
    events = _examples() + _edges()
    for i, original in enumerate(events):
        e = copy.deepcopy(original)
        e["auditID"] = f"x-{i}-{e.get('auditID', '')}"
        events[i] = e
    builders.make_table(events, con)
    return con


def _both(
    spark: Any,  # noqa: F811
    con: duckdb.DuckDBPyConnection,
    detections: list[Any],
) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Rows (rowids) each rule matches, in DuckDB and in Spark, by rule id."""
    duck: dict[int, set[int]] = {}
    for i, r in enumerate(detections):
        assert r.sql
        rows = con.execute(f'SELECT rowid FROM "{TABLE}" WHERE {r.sql}').fetchall()  # noqa: S608
        duck[i] = {int(x[0]) for x in rows}
    cols = ", ".join(
        f'CAST("{c}" AS VARCHAR) AS "{c}"' if t == "JSON" else f'"{c}"' for c, t, _ in COLUMNS
    )
    arrow = con.sql(
        f'SELECT {cols}, 0::BIGINT AS {FI}, rowid AS {ORD} FROM "{TABLE}"'  # noqa: S608
    ).to_arrow_table()
    ddl = f"{EVENT_DDL}, {FI} bigint, {ORD} bigint"
    spark.createDataFrame(arrow, schema=ddl).createOrReplaceTempView(TABLE)
    compiled = spark_predicates(detections)
    failed = [(detections[i].path, why) for i, sql, why in compiled if sql is None]
    assert failed == []
    matched = matched_events(spark, [(i, sql) for i, sql, _ in compiled if sql is not None])
    on_spark: dict[int, set[int]] = {i: set() for i in duck}
    for row in matched.select("rs", ORD).collect():
        for r in row["rs"]:
            on_spark[int(r)].add(int(row[ORD]))
    matched.unpersist()
    ids = [r.rule_id for r in detections]
    return (
        {ids[i]: v for i, v in duck.items() if v},
        {ids[i]: v for i, v in on_spark.items() if v},
    )


def test_every_rule_matches_the_same_rows_in_both_dialects(spark: Any, tmp_path: Path) -> None:  # noqa: F811
    con = _table()
    duck, on_spark = _both(spark, con, _rules(tmp_path).detections)
    assert {k for k in CUSTOM if k not in duck} <= {"null_scalar"}, "custom rules must match"
    assert sum(len(v) for v in duck.values()) > 100, "the rows must exercise the rules"
    differ = {
        k: (
            sorted(duck.get(k, set()) - on_spark.get(k, set())),
            sorted(on_spark.get(k, set()) - duck.get(k, set())),
        )
        for k in set(duck) | set(on_spark)
        if duck.get(k) != on_spark.get(k)
    }
    assert differ == {}


# ------------------------------------------------------------------ random bodies, both engines

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from(
        ["true", "false", "0", "/", "/etc", "SYS_ADMIN", "ALL", "xmrig", "a'b", "a\\\\b"]
    ),
    st.text(alphabet="aZ/*?%_'\\\\\\n.İ-", max_size=6),
)
_containers = st.lists(
    st.dictionaries(
        st.sampled_from(["name", "image", "securityContext", "command", "args"]),
        st.one_of(
            _values,
            st.dictionaries(
                st.sampled_from(["privileged", "capabilities", "runAsUser"]),
                st.one_of(_values, st.dictionaries(st.just("add"), st.lists(_values, max_size=2))),
                max_size=2,
            ),
        ),
        max_size=4,
    ),
    max_size=3,
)
_specs = st.fixed_dictionaries(
    {},
    optional={
        "containers": st.one_of(_containers, _values),
        "initContainers": _containers,
        "hostPID": _values,
        "hostNetwork": _values,
        "volumes": st.lists(
            st.dictionaries(
                st.sampled_from(["name", "hostPath"]),
                st.one_of(_values, st.dictionaries(st.just("path"), _values, max_size=1)),
                max_size=2,
            ),
            max_size=2,
        ),
    },
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(_specs, min_size=1, max_size=12), agent=_values)
def test_random_pod_bodies_match_alike(spark: Any, specs: list[dict[str, Any]], agent: Any) -> None:  # noqa: F811
    events = [
        _pod(spec, auditID=f"h{i}", userAgent=agent if isinstance(agent, str) else "kubectl")
        for i, spec in enumerate(specs)
    ]
    con = duckdb.connect()
    _builders().make_table(events, con)
    with tempfile.TemporaryDirectory() as tmp:
        rules = _rules(Path(tmp))
    duck, on_spark = _both(spark, con, rules.detections)
    assert duck == on_spark
