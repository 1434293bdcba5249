"""``podmortem audit analyze``: JSON document, case integration, safe terminal output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from podmortem.case import Case
from podmortem.case.index import load_findings
from podmortem.cli.main import app

EXEC = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "11111111-2222-3333-4444-555555555555",
    "stage": "ResponseStarted",
    "requestURI": (
        "/api/v1/namespaces/prod/pods/api-0/exec?command=sh&command=-c&command=id&container=api"
    ),
    "verb": "get",
    "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]},
    "sourceIPs": ["198.51.100.7"],
    "userAgent": "kubectl/v1.31.0",
    "objectRef": {
        "resource": "pods",
        "namespace": "prod",
        "name": "api-0",
        "subresource": "exec",
        "apiVersion": "v1",
    },
    "responseStatus": {"code": 101},
    "requestReceivedTimestamp": "2026-11-20T10:00:00.000000Z",
    "stageTimestamp": "2026-11-20T10:00:00.100000Z",
}


def _write(tmp_path: Path, *events: dict[str, object]) -> Path:
    p = tmp_path / "audit.log"
    p.write_text("".join(json.dumps(e) + "\n" for e in events))
    return p


def test_json_document_has_the_issue_shape(tmp_path: Path) -> None:
    log = _write(tmp_path, EXEC)
    out = tmp_path / "out.json"
    res = CliRunner().invoke(
        app, ["audit", "analyze", str(log), "--json", str(out)], env={"COLUMNS": "250"}
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["events_read"] == 1
    assert doc["events_by_source"] == {"native/jsonl": 1}
    assert doc["rules_loaded"]["builtin"] >= 50 and doc["rules_loaded"]["sigma"] == 0
    assert isinstance(doc["caveats"], list)
    ids = {f["rule_id"] for f in doc["findings"]}
    assert {"k8s_exec_into_container", "k8s_exec_shell_or_tool"} <= ids
    f = next(f for f in doc["findings"] if f["rule_id"] == "k8s_exec_into_container")
    for key in (
        "rule_id",
        "title",
        "severity",
        "techniques",
        "time",
        "actor",
        "source_ips",
        "object",
        "audit_ids",
        "summary",
    ):
        assert key in f
    assert f["audit_ids"] == [EXEC["auditID"]]
    assert f["actor"] == "mallory@example.com" and f["source_ips"] == ["198.51.100.7"]
    assert f["object"] == "pods/exec prod/api-0"
    assert f["techniques"] == ["T1609"] and f["severity"] == "medium"
    assert f["commands"] == ["sh -c id"]
    assert "mallory@example.com" in res.output


def test_sigma_folder_and_min_severity(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "exec.yml").write_text(
        "title: my exec\nid: 7c1f0b8e-0000-4000-8000-000000000001\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection: {sel: {objectRef.subresource: exec}, condition: sel}\nlevel: critical\n"
    )
    (rules / "broken.yml").write_text("title: [\n")
    log = _write(tmp_path, EXEC)
    out = tmp_path / "out.json"
    res = CliRunner().invoke(
        app,
        [
            "audit",
            "analyze",
            str(log),
            "--sigma",
            str(rules),
            "--no-builtin",
            "--min-severity",
            "high",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["rules_loaded"] == {"builtin": 0, "sigma": 1, "custom": 0}
    assert [e["path"].endswith("broken.yml") for e in doc["rule_errors"]] == [True]
    assert [f["title"] for f in doc["findings"]] == ["my exec"]
    assert "broken.yml" in res.output


def test_case_records_inputs_events_findings_and_custody(tmp_path: Path) -> None:
    case_dir = tmp_path / "case"
    Case.init(case_dir, case_id="IR-1", examiner="tester")
    log = _write(tmp_path, EXEC)
    res = CliRunner().invoke(app, ["audit", "analyze", str(log), "--case", str(case_dir)])
    assert res.exit_code == 0, res.output
    case = Case.open(case_dir)
    [art] = [a for a in case.artifacts if a.path.startswith("artifacts/audit/")]
    assert art.source == "file" and art.size == log.stat().st_size
    found = load_findings(case, "audit")
    assert "k8s_exec_into_container" in {f.rule_id for f in found}
    import duckdb

    con = duckdb.connect(str(case.index_path), read_only=True)
    row = con.execute("SELECT count(*), min(source_file) FROM audit_events").fetchone()
    con.close()
    assert row is not None and row[0] == 1 and "artifacts/audit/" in str(row[1])
    records = [json.loads(x) for x in (case_dir / "custody.jsonl").read_text().splitlines()]
    [run] = [r for r in records if r["action"] == "analysis_run"]
    assert run["details"]["inputs"][0]["sha256"] == art.sha256
    assert run["details"]["events_read"] == 1
    # a second run over the same evidence replaces, not duplicates, the findings
    CliRunner().invoke(app, ["audit", "analyze", str(log), "--case", str(case_dir)])
    assert len(load_findings(Case.open(case_dir), "audit")) == len(found)


def test_hostile_strings_are_escaped_on_the_terminal(tmp_path: Path) -> None:
    ev = dict(EXEC)
    ev["user"] = {"username": "\x1b[2J\x1b]0;pwned\x07[bold red]root[/]", "groups": []}
    log = _write(tmp_path, ev)
    res = CliRunner().invoke(app, ["audit", "analyze", str(log)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\x07" not in res.output
    assert "\\x1b[2J" in res.output and "[bold red]root[/]" in res.output


def test_missing_input_is_one_line_error(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-c",
        "from podmortem.cli.main import run; run()",
        "audit",
        "analyze",
        str(tmp_path / "nope.log"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_min_severity_is_a_usage_error(tmp_path: Path) -> None:
    log = _write(tmp_path, EXEC)
    res = CliRunner().invoke(app, ["audit", "analyze", str(log), "--min-severity", "urgent"])
    assert res.exit_code == 2


def _raw_and_origin(case_dir: Path) -> tuple[object, str, int]:
    import duckdb

    con = duckdb.connect(str(Case.open(case_dir).index_path), read_only=True)
    row = con.execute("SELECT raw, source_file, source_line FROM audit_events").fetchone()
    con.close()
    assert row is not None
    return row[0], str(row[1]), int(row[2])


def test_raw_is_kept_only_when_asked_or_read_by_a_rule(tmp_path: Path) -> None:
    """By default the original record stays in the (hashed) artifact, located by file and
    line; --keep-raw copies it into the index, and so does a rule that reads it (keywords)."""
    quiet = {**EXEC, "auditID": "00000000-0000-0000-0000-00000000000a"}
    log = _write(tmp_path, quiet, EXEC)
    kw = tmp_path / "kw"
    kw.mkdir()
    (kw / "keyword.yml").write_text(
        "title: keyword\nid: 2b0a4a4e-5f0e-4d55-9a51-2f7f4f3f1a10\nstatus: test\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  keywords: [mallory]\n  condition: keywords\nlevel: low\n"
    )
    runs = {"default": [], "keep": ["--keep-raw"], "keyword": ["--sigma", str(kw)]}
    kept = {}
    for name, extra in runs.items():
        case_dir = tmp_path / name
        Case.init(case_dir, case_id=name, examiner="tester")
        res = CliRunner().invoke(
            app, ["audit", "analyze", str(log), "--case", str(case_dir), *extra]
        )
        assert res.exit_code == 0, res.output
        raw, source, line = _raw_and_origin(case_dir)
        original = (case_dir / source).read_text().splitlines()[line - 1]
        assert json.loads(original)["auditID"] == quiet["auditID"]
        kept[name] = raw is not None and json.loads(str(raw)) == quiet
    assert kept == {"default": False, "keep": True, "keyword": True}
