"""The Spark SQL dialect of the rule compiler against the DuckDB one, rule by rule and row by
row: every built-in and SigmaHQ rule over the same rows (the test fixtures, every rule's own
examples, and events made to hit the places where the two SQL engines differ: JSON null
against an absent key, quotes and backslashes, a newline before the end of a value, list
fields, numbers written as strings) must match exactly the same rows in both engines."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest
import yaml
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


def _rules() -> RuleSet:
    rules = load_builtin()
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


def test_every_rule_matches_the_same_rows_in_both_dialects(spark: Any) -> None:  # noqa: F811
    rules = _rules()
    detections = rules.detections
    con = _table()
    duck: dict[int, set[int]] = {}
    for i, r in enumerate(detections):
        assert r.sql
        rows = con.execute(f'SELECT rowid FROM "{TABLE}" WHERE {r.sql}').fetchall()  # noqa: S608
        duck[i] = {int(x[0]) for x in rows}
    assert sum(len(v) for v in duck.values()) > 100, "the rows must exercise the rules"

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
    differ = {
        detections[i].rule_id: (sorted(duck[i] - on_spark[i]), sorted(on_spark[i] - duck[i]))
        for i in duck
        if duck[i] != on_spark[i]
    }
    assert differ == {}
