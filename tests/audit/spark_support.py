"""Shared by the Spark tests: one local[2] session per test run (the JVM takes ~10 s to
start), and the comparison of two analysis results that the issue calls identical."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from podmortem.audit.analyze import AnalysisResult


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime for Spark")
    from podmortem.audit.spark.session import session

    s = session(
        "local[2]",
        {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"},
    )
    yield s
    s.stop()


def comparable(result: AnalysisResult) -> dict[str, Any]:
    """The ``--json`` document without what may legitimately differ between engines or
    runs: timings, and the order of lists that neither engine defines (findings tied on
    severity, time and rule; blind-spot caveats, one per provider; the first file of a
    finding that several files share). Everything else must be equal, value for value."""
    doc = result.to_dict()
    doc.pop("seconds")
    for name in ("actors", "sessions", "credentials", "narrative", "timeline", "gaps"):
        doc.pop(name, None)  # reconstruction: the embedded engine only
    doc["caveats"] = sorted(json.dumps(c, sort_keys=True) for c in doc["caveats"])
    findings = []
    for finding in doc["findings"]:
        f = dict(finding)
        for key in ("source_ips", "user_agents", "providers", "clusters", "owners", "commands"):
            if key in f:
                f[key] = sorted(f[key])
        findings.append(json.dumps(f, sort_keys=True, default=str))
    doc["findings"] = sorted(findings)
    return doc


def assert_identical(embedded: AnalysisResult, on_spark: AnalysisResult) -> None:
    a, b = comparable(embedded), comparable(on_spark)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], f"{key} differs between the engines"
    # the words: rule ids, audit_ids, severities, actors, caveats
    ids = [(f.rule_id, f.evidence, f.severity, f.subject) for f in embedded.findings]
    assert sorted(ids) == sorted(
        (f.rule_id, f.evidence, f.severity, f.subject) for f in on_spark.findings
    )
