"""``audit analyze --engine spark`` and ``audit export-parquet`` as users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from spark_support import assert_identical, spark  # noqa: F401 - the session fixture

from podmortem.audit.analyze import analyze
from podmortem.audit.spark.engine import analyze_spark

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
EXEC = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "11111111-2222-3333-4444-555555555555",
    "stage": "ResponseStarted",
    "requestURI": "/api/v1/namespaces/prod/pods/api-0/exec?command=sh&command=-c&command=id",
    "verb": "get",
    "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]},
    "sourceIPs": ["198.51.100.7"],
    "userAgent": "kubectl/v1.31.0",
    "objectRef": {"resource": "pods", "namespace": "prod", "name": "api-0", "subresource": "exec"},
    "responseStatus": {"code": 101},
    "requestReceivedTimestamp": "2026-11-20T10:00:00.000000Z",
    "stageTimestamp": "2026-11-20T10:00:00.100000Z",
}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from podmortem.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_spark_engine_without_pyspark_exits_4_with_the_install_hint(tmp_path: Path) -> None:
    # A pyspark that cannot be imported, as on an install without the extra.
    shim = tmp_path / "shim" / "pyspark"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('no pyspark', name='pyspark')\n")
    log = tmp_path / "a.log"
    log.write_text(json.dumps(EXEC) + "\n")
    res = _cli(
        "audit", "analyze", "--engine", "spark", str(log),
        env={"PYTHONPATH": str(tmp_path / "shim")},
    )  # fmt: skip
    assert res.returncode == 4, res.stderr + res.stdout
    err = res.stderr.strip()
    assert "pip install podmortem[spark]" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(json.dumps(EXEC) + "\n")
    res = _cli("audit", "analyze", "--engine", "flink", str(log))
    assert res.returncode != 0 and "duckdb or spark" in res.stderr + res.stdout


@pytest.mark.spark
def test_cli_spark_engine_json_document(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    log = tmp_path / "a.log"
    log.write_text(json.dumps(EXEC) + "\n")
    out = tmp_path / "out.json"
    res = _cli("audit", "analyze", "--engine", "spark", str(log), "--json", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["events_read"] == 1
    exec_findings = [f for f in doc["findings"] if f["rule_id"] == "k8s_exec_into_container"]
    assert exec_findings and exec_findings[0]["audit_ids"] == [EXEC["auditID"]]
    assert "1 audit events" in res.stdout


def test_export_parquet_partitions_by_cluster_and_day_and_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    doc = tmp_path / "export.json"
    res = _cli("audit", "export-parquet", str(FIXTURES), "--out", str(out), "--json", str(doc))
    assert res.returncode == 0, res.stderr
    read = json.loads(doc.read_text())
    assert read["caveats"] and read["parquet_files"]  # the fixtures hold malformed lines
    parts = {p.parent.relative_to(out).as_posix() for p in out.rglob("*.parquet")}
    assert parts and all(p.startswith("cluster=") and "/day=" in p for p in parts)
    assert any("cluster=__HIVE_DEFAULT_PARTITION__" in p for p in parts)  # native: no cluster
    days = {p.split("/day=")[1] for p in parts}
    assert all(d == "__HIVE_DEFAULT_PARTITION__" or len(d) == 10 for d in days)
    # Recognised from content, not a name: rename every file.
    for i, p in enumerate(sorted(out.rglob("*.parquet"))):
        p.rename(p.with_name(f"blob{i}"))
    original = analyze([str(FIXTURES)], reconstruction=False)
    again = analyze([str(out)], reconstruction=False)
    assert again.events_read == original.events_read
    assert again.events_by_source == original.events_by_source
    a = sorted((f.rule_id, f.evidence, f.severity, f.subject) for f in original.findings)
    b = sorted((f.rule_id, f.evidence, f.severity, f.subject) for f in again.findings)
    assert a == b


def test_export_parquet_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    out.mkdir()
    (out / "keep.txt").write_text("examiner's notes")
    res = _cli("audit", "export-parquet", str(FIXTURES), "--out", str(out))
    assert res.returncode == 3, res.stderr  # InputError, one line
    assert "refusing" in res.stderr and "Traceback" not in res.stderr
    assert (out / "keep.txt").read_text() == "examiner's notes"


@pytest.mark.spark
def test_spark_reads_the_parquet_dataset_as_the_embedded_engine_does(
    spark: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "pq"
    assert _cli("audit", "export-parquet", str(FIXTURES), "--out", str(out)).returncode == 0
    embedded = analyze([str(out)], reconstruction=False)
    on_spark = analyze_spark([str(out)], spark=spark)
    assert embedded.events_read > 1000
    assert_identical(embedded, on_spark)
    # a dataset written before log_name existed: both engines read the column as NULL
    import duckdb

    old = tmp_path / "old"
    old.mkdir()
    con = duckdb.connect()
    for i, f in enumerate(sorted(out.rglob("*.parquet"))):
        con.execute(
            f"COPY (SELECT * EXCLUDE (log_name) FROM read_parquet('{f}'))"  # noqa: S608 - test paths
            f" TO '{old / f'part{i}.parquet'}' (FORMAT PARQUET)"
        )
    assert_identical(
        analyze([str(old)], reconstruction=False), analyze_spark([str(old)], spark=spark)
    )


@pytest.mark.spark
def test_a_parquet_dataset_behind_a_url_is_recognised_by_content(
    spark: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "pq"
    assert (
        _cli("audit", "export-parquet", str(FIXTURES / "sources"), "--out", str(out)).returncode
        == 0
    )
    embedded = analyze([str(out)], reconstruction=False)
    on_spark = analyze_spark(["file://" + str(out)], spark=spark)
    assert on_spark.events_read == embedded.events_read > 0
    assert not [c for c in on_spark.caveats if c.kind == "unrecognised-file"]
    a = sorted((f.rule_id, f.evidence, f.severity, f.subject) for f in embedded.findings)
    assert a == sorted((f.rule_id, f.evidence, f.severity, f.subject) for f in on_spark.findings)
