"""The ``podmortem case`` commands as a user runs them: exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def podmortem(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podmortem", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> None:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("podmortem: error: "), proc.stderr


def test_init_add_verify_export_round_trip(tmp_path: Path) -> None:
    case = tmp_path / "case"
    assert podmortem("case", "init", case, "--case-id", "IR-1", "--examiner", "eve").returncode == 0
    evidence = tmp_path / "pod.log"
    evidence.write_bytes(b"\x1b[31mhostile\x1b[0m log line\n")
    added = podmortem("case", "add", case, evidence)
    assert added.returncode == 0, added.stderr
    verified = podmortem("case", "verify", case, "--json", tmp_path / "v.json")
    assert verified.returncode == 0, verified.stdout
    assert "OK" in verified.stdout
    assert json.loads((tmp_path / "v.json").read_text())["ok"] is True
    exported = podmortem("case", "export", case, tmp_path / "case.tar.zst")
    assert exported.returncode == 0, exported.stderr
    check = subprocess.run(["sha256sum", "-c", "case.tar.zst.sha256"], cwd=tmp_path, check=False)
    assert check.returncode == 0


def test_verify_reports_tampering_precisely(tmp_path: Path) -> None:
    case = tmp_path / "case"
    podmortem("case", "init", case, "--case-id", "IR-1", "--examiner", "eve")
    (tmp_path / "a").write_text("alpha")
    podmortem("case", "add", case, tmp_path / "a")
    (case / "artifacts/files/a").write_text("alphA")
    (case / "artifacts/extra").write_text("planted")
    proc = podmortem("case", "verify", case)
    assert proc.returncode == 1
    assert "artifact-modified: artifacts/files/a" in proc.stdout
    assert "file-unrecorded: artifacts/extra" in proc.stdout
    assert "FAILED verification" in proc.stderr


@pytest.mark.parametrize(
    "setup",
    ["missing", "empty", "not-a-case", "truncated-manifest", "non-json-manifest", "a-file"],
)
def test_verify_on_bad_input_is_one_line_and_non_zero(tmp_path: Path, setup: str) -> None:
    target = tmp_path / "t"
    if setup != "missing":
        target.mkdir()
    if setup == "not-a-case":
        (target / "notes.txt").write_text("hello")
    if setup in {"truncated-manifest", "non-json-manifest"}:
        podmortem("case", "init", tmp_path / "real", "--case-id", "x", "--examiner", "y")
        full = (tmp_path / "real" / "case.json").read_bytes()
        body = full[: len(full) // 2] if setup == "truncated-manifest" else b"\x00\xffgarbage"
        (target / "case.json").write_bytes(body)
    if setup == "a-file":
        target.rmdir()
        target.write_text("x")
    assert_one_line_error(podmortem("case", "verify", target), 3)


def test_init_on_existing_case_refuses_and_touches_nothing(tmp_path: Path) -> None:
    case = tmp_path / "case"
    podmortem("case", "init", case, "--case-id", "IR-1", "--examiner", "eve")
    before = {p.name: p.read_bytes() for p in case.iterdir() if p.is_file()}
    assert_one_line_error(
        podmortem("case", "init", case, "--case-id", "IR-2", "--examiner", "mallory"), 3
    )
    assert {p.name: p.read_bytes() for p in case.iterdir() if p.is_file()} == before


def test_a_pending_group_says_so_in_help_and_fails() -> None:
    import typer
    from typer.testing import CliRunner

    from podmortem.cli._pending import NOT_AVAILABLE, pending_group

    app = typer.Typer()
    app.add_typer(pending_group("cloud", "Cloud procedures."), name="cloud")

    @app.command()
    def other() -> None:  # a second command so that "cloud" stays a sub-group
        pass

    runner = CliRunner()
    assert "NOT AVAILABLE" in runner.invoke(app, ["--help"]).output
    result = runner.invoke(app, ["cloud"])
    assert result.exit_code == NOT_AVAILABLE
    assert "not available" in result.output
