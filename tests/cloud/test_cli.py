"""The ``podmortem cloud`` commands end to end: moto's server for AWS (through
AWS_ENDPOINT_URL) and the fake API server through a kubeconfig, as a user would run them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from podmortem.case import Case, verify_case
from podmortem.cli.main import app

from . import aws_world
from .k8s_server import FakeKube, kubeconfig

runner = CliRunner()


def test_plan_preserve_again_via_cli(aws_env: str, kube: FakeKube, tmp_path: Path) -> None:
    world = aws_world.build()
    kube.add_node("ip-10-0-1-5.ec2.internal", f"aws:///us-east-1a/{world.instance}")
    kc = kubeconfig(tmp_path / "kubeconfig", kube.url)  # type: ignore[attr-defined]
    Case.init(tmp_path / "case", case_id="IR-7", examiner="tester")
    base = ["cloud", "--help"]
    assert runner.invoke(app, base).exit_code == 0
    sel = [
        "eks",
        "--cluster",
        "prod",
        "--node",
        "ip-10-0-1-5.ec2.internal",
        "--kubeconfig",
        str(kc),
        "--case",
        str(tmp_path / "case"),
    ]
    before = aws_world.state(world)

    res = runner.invoke(app, ["cloud", "plan", *sel])
    assert res.exit_code == 0, res.output
    assert "dry run" in res.output and "eks.snapshot-volumes" in res.output
    assert "why:" in res.output and "undo:" in res.output
    assert aws_world.state(world) == before and not kube.writes()

    res = runner.invoke(app, ["cloud", "preserve", *sel])  # no --execute: dry run
    assert res.exit_code == 0, res.output
    assert aws_world.state(world) == before

    out = tmp_path / "preserve.json"
    res = runner.invoke(app, ["cloud", "preserve", *sel, "--execute", "--json", str(out)])
    assert res.exit_code == 0, res.output
    after = aws_world.state(world)
    assert after["termination_protected"] and after["scale_in_protected"]
    assert after["snapshots"] == sorted((v, "IR-7") for v in world.volumes)
    doc = json.loads(out.read_text())
    assert doc["summary"]["changed"] >= 6

    res = runner.invoke(app, ["cloud", "preserve", *sel, "--execute"])
    assert res.exit_code == 0, res.output
    assert "nothing to do" in res.output
    assert runner.invoke(app, ["case", "verify", str(tmp_path / "case")]).exit_code == 0
    assert verify_case(tmp_path / "case").ok


def test_execute_needs_a_case_and_one_selector(aws_env: str, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "cloud",
            "preserve",
            "eks",
            "--cluster",
            "prod",
            "--instance-id",
            "i-0123456789abcdef0",
            "--no-kube",
            "--execute",
        ],
    )
    assert res.exit_code != 0
    res = runner.invoke(app, ["cloud", "plan", "eks", "--cluster", "prod", "--no-kube"])
    assert res.exit_code != 0


def _collect(case_dir: Path, case_id: str, *, since: str, page_size: int) -> Result:
    """``cloud collect-logs eks --cluster prod`` into a new case."""
    Case.init(case_dir, case_id=case_id, examiner="tester")
    return runner.invoke(
        app,
        ["cloud", "collect-logs", "eks", "--cluster", "prod", "--since", since,
         "--case", str(case_dir), "--page-size", str(page_size)],
    )  # fmt: skip


def test_collect_logs_pages_into_the_case(aws_env: str, tmp_path: Path) -> None:
    aws_world.put_audit_log(aws_world.audit_event(i) for i in range(250))
    aws_world.put_audit_log(["I1126 scheduler text"], stream="kube-scheduler-abc")
    case_dir = tmp_path / "case"
    res = _collect(case_dir, "IR-8", since="2h", page_size=100)
    assert res.exit_code == 0, res.output
    # moto ignores logStreamNamePrefix (AWS applies it), so the scheduler line comes too.
    assert "251 audit records in 3 page(s)" in res.output
    case = Case.open(case_dir)
    pages = [a for a in case.artifacts if a.path.startswith("artifacts/cloud/eks/prod/")]
    assert len(pages) == 3
    got = []
    for a in pages:
        doc = json.loads((case_dir / a.path).read_text())
        got += [
            json.loads(e["message"])["auditID"]
            for e in doc["events"]
            if e["logStreamName"].startswith("kube-apiserver-audit")
        ]
    assert sorted(got) == sorted(f"a-{i}" for i in range(250))
    assert verify_case(case_dir).ok


def test_collected_pages_are_ready_for_audit_analyze(aws_env: str, tmp_path: Path) -> None:
    """The contract with the audit capability: collect-logs output is read as-is."""
    aws_world.put_audit_log((aws_world.audit_event(i) for i in range(30)), age_s=600)
    case_dir = tmp_path / "case"
    res = _collect(case_dir, "IR-9", since="1h", page_size=10)
    assert res.exit_code == 0, res.output
    out = tmp_path / "audit.json"
    res = runner.invoke(
        app, ["audit", "analyze", str(case_dir / "artifacts" / "cloud" / "eks"), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["events_by_source"] == {"eks/filter-log-events": 30}
