"""``podmortem audit hunt`` as users run it, and hostile rule values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bq_duckdb import connect, insert, run, sink_row

from podmortem.audit.hunt import load_rules, plan_hunt
from podmortem.errors import InputError

HOSTILE_RULE = """title: hostile
id: 0b5c5f8e-0000-4000-8000-000000000001
name: hostile_values
status: experimental
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    objectRef.resource: pods
    user.username:
      - "a'b\\"c\\\\d|e"
      - "x') OR 1=1 --"
      - "y\\" or true | where 1==1 //"
      - "line1\\nline2"
      - "/etc/passwd*"
  condition: selection
level: high
"""


def test_unknown_rule_is_a_usage_error() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from podmortem.cli.main import run; run()",
            "audit",
            "hunt",
            "eks",
            "--rule",
            "no_such_rule",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown rule id(s): 'no_such_rule'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_output_reports_unexpressible_rules_with_reason() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from podmortem.cli.main import run; run()",
            "audit",
            "hunt",
            "eks",
            "--rule",
            "k8s_exec_shell_or_tool",
            "--rule",
            "k8s_exec_into_container",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by_id = {r["rule_id"]: r["queries"][0] for r in doc["rules"]}
    assert by_id["k8s_exec_shell_or_tool"]["query"] is None
    assert "URL-encoded" in by_id["k8s_exec_shell_or_tool"]["reason"]
    assert by_id["k8s_exec_into_container"]["query"].startswith("fields @timestamp")


def test_correlation_is_not_expressible_in_the_cloud_logging_filter() -> None:
    plan = plan_hunt("gke", load_rules(), rule_ids=["k8s_forbidden_burst"])
    logging_q, bq = plan.hunts[0].queries
    assert logging_q.query is None and "cannot count" in (logging_q.reason or "")
    assert bq.query is not None and "HAVING COUNT(DISTINCT insertId) >= 20" in bq.query


def test_hostile_values_stay_values(tmp_path: Path) -> None:
    (tmp_path / "hostile.yml").write_text(HOSTILE_RULE, encoding="utf-8")
    rules = load_rules(rules_dirs=[tmp_path], builtin=False)
    assert not rules.errors
    for provider in ("eks", "aks", "gke"):
        plan = plan_hunt(provider, rules)
        for q in plan.hunts[0].queries:
            assert q.query is not None, q.reason
            # printable ASCII only: no raw newline, quote break-out is escaped per language
            assert all(" " <= c <= "~" or c == "\n" for c in q.query)
            assert "line1\nline2" not in q.query
    # executed: each hostile value matches itself exactly and nothing else
    bq = plan_hunt("gke", rules).hunts[0].queries[1].query
    assert bq is not None
    con = connect()
    users = [
        "a'b\"c\\d|e",
        "x') OR 1=1 --",
        'y" or true | where 1==1 //',
        "line1\nline2",
        "/etc/passwd.bak",
        "someone-else",
        "x",
        "line1",
    ]
    base = {
        "verb": "get",
        "objectRef": {"resource": "pods", "namespace": "p", "name": "n"},
        "stageTimestamp": "2026-11-20T10:00:00Z",
        "responseStatus": {"code": 200},
    }
    insert(con, [sink_row({**base, "user": {"username": u}}, str(i)) for i, u in enumerate(users)])
    got = sorted(int(r[1]) for r in run(con, bq))
    assert got == [0, 1, 2, 3, 4]


def test_cluster_name_is_refused_unless_a_plain_name() -> None:
    """--cluster is printed into the EKS shell command and into every language's literal."""
    for bad in ("x; rm -rf /", "a b", "$(id)", "prod\nAND 1", "-x", "x" * 101, ""):
        with pytest.raises(InputError, match="--cluster"):
            plan_hunt("eks", load_rules(), cluster=bad)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from podmortem.cli.main import run; run()",
            "audit",
            "hunt",
            "eks",
            "--cluster",
            "x;id",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "--cluster" in proc.stderr and "Traceback" not in proc.stderr
    plan = plan_hunt("eks", load_rules(), rule_ids=["k8s_secret_read"], cluster="prod_1.a-b")
    assert plan.cluster == "prod_1.a-b"
