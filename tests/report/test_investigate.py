"""Orchestration: step order, the shared budget, failures that become caveats, and the CLI's
one-line errors. Live acquisition is in test_live.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from podmortem.case import Case
from podmortem.errors import InputError
from podmortem.investigate import Plan, investigate
from podmortem.report import model
from podmortem.report.evidence import parse_time

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AUDIT = [EXAMPLES / "audit" / "eks-attack.json", EXAMPLES / "audit" / "native-attack.jsonl"]


class Clock:
    """Each call advances 100 s: the first step spends the whole budget."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 100.0
        return self.t


def test_budget_exhausted_steps_become_caveats(
    tmp_path: Path, examples: dict[str, ModuleType]
) -> None:
    img = examples["image"].build(tmp_path / "img.tar")
    case = Case.init(tmp_path / "case", case_id="B", examiner="t")
    out = investigate(case, Plan(audit=AUDIT, images=[str(img.path)], budget=150), clock=Clock())
    assert [s["status"] for s in out.steps] == ["done", "skipped"]  # image ran, audit did not
    rep = model.build(case)
    kinds = [(a, c.kind) for a, c in rep.caveats]
    assert ("investigate", "budget-exhausted") in kinds
    assert any("audit" in c.message for _, c in rep.caveats if c.kind == "budget-exhausted")
    assert any("gap(s)" in r for r in rep.summary.confidence_reasons)


def test_a_failing_step_does_not_stop_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.tar"
    bad.write_bytes(b"this is no tar archive")
    case = Case.init(tmp_path / "case", case_id="F", examiner="t")
    out = investigate(case, Plan(audit=AUDIT, images=[str(bad)], budget=120))
    assert [s["status"] for s in out.steps] == ["failed", "done"]
    assert out.caveats[0].kind == "analysis-failed"
    assert model.build(case).findings  # the audit findings are there


def test_bad_target_is_refused_before_anything_runs(tmp_path: Path) -> None:
    case = Case.init(tmp_path / "case", case_id="X", examiner="t")
    with pytest.raises(InputError):
        investigate(case, Plan(targets=["docker://$(reboot)"]))
    assert [r.action for r in model.evidence.load(case).custody] == ["case_created"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podmortem", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    for args in (
        ["investigate", "--case", str(tmp_path / "c1")],
        ["report", str(tmp_path / "nope"), "--html", str(tmp_path / "r.html")],
        ["report", str(tmp_path)],
    ):
        proc = _cli(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_cli_investigate_offline_example(tmp_path: Path, examples: dict[str, ModuleType]) -> None:
    img = examples["image"].build(tmp_path / "img.tar")
    report = tmp_path / "out" / "report.html"
    proc = _cli(
        "investigate",
        "--image",
        str(img.path),
        "--audit",
        str(AUDIT[0]),
        "--audit",
        str(AUDIT[1]),
        "--case",
        str(tmp_path / "case"),
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"report: {report}" in proc.stdout
    assert report.stat().st_size > 1_000_000
    in_case = list((tmp_path / "case" / "artifacts" / "reports").glob("*/report.*"))
    assert sorted(p.suffix for p in in_case) == [".html", ".json", ".md"]
    verify = _cli("case", "verify", str(tmp_path / "case"))
    assert verify.returncode == 0, verify.stdout


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-20T09:16:02.123456789Z", datetime(2026, 11, 20, 9, 16, 2, 123456, tzinfo=UTC)),
        ("2026-11-20T09:16:02+00:00", datetime(2026, 11, 20, 9, 16, 2, tzinfo=UTC)),
        ("2026-11-20T09:16:02", datetime(2026, 11, 20, 9, 16, 2, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),  # Docker: "never" (FinishedAt of a running container)
        ("yesterday", None),
        ("", None),
        (12, None),
    ],
)
def test_parse_time(raw: object, expected: datetime | None) -> None:
    assert parse_time(raw) == expected
