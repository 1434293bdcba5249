"""``kill -9`` at any moment leaves a case that verifies up to the last complete artifact
and names the one that was being written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from podmortem.case import Case, verify_case
from podmortem.case import verify as v

WRITER = textwrap.dedent(
    """
    import sys, time
    from podmortem.case import Case
    case = Case.open(sys.argv[1])
    for i in range(int(sys.argv[2])):
        case.add_bytes(f"small/{i}.txt", f"artifact {i}".encode() * 50, source="node")
    print("small done", flush=True)
    with case.artifact("memory/big.bin", source="node", command="dump") as w:
        chunk = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(10_000):
            w.write(chunk)
            time.sleep(0.001)
    """
)


def start_writer(root: Path, small: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(small)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_kill_during_large_artifact_names_it_and_verifies_the_rest(tmp_path: Path) -> None:
    case = Case.init(tmp_path / "c", case_id="IR-9", examiner="carol")
    proc = start_writer(case.root, 5)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "small done"
    time.sleep(0.5)  # well inside the ~10 s big write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    report = verify_case(case.root)
    assert report.ok, report.problems
    assert report.artifacts_checked == 5
    incomplete = [w for w in report.warnings if w.kind == v.ARTIFACT_INCOMPLETE]
    assert [w.subject for w in incomplete] == ["artifacts/memory/big.bin"]
    # The partial data is kept for the examiner, not passed off as evidence.
    assert any((case.root / ".partial").iterdir())


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4])
def test_kill_at_arbitrary_moments_never_breaks_the_chain(tmp_path: Path, delay: float) -> None:
    case = Case.init(tmp_path / "c", case_id="IR-9", examiner="carol")
    proc = start_writer(case.root, 400)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    report = verify_case(case.root)
    assert report.ok, report.problems
    # A later session continues the chain cleanly after the crash.
    Case.open(case.root).add_bytes("after-crash.txt", b"ok", source="file")
    report = verify_case(case.root)
    assert report.ok, report.problems
    assert not [w for w in report.warnings if w.kind == v.MANIFEST_BEHIND]


def test_index_left_half_made_by_a_kill_is_made_again(tmp_path: Path) -> None:
    """A process killed while DuckDB writes a new case index leaves at most the unfinished
    ``index.duckdb.new`` (the index appears only whole, by rename); the next writer makes
    the index again. Before, the truncated index itself stayed and no process could open
    the case index again (seen: the watch responder killed at the wrong moment)."""
    import duckdb

    from podmortem.case.index import connect, load_findings

    case = Case.init(tmp_path / "case", case_id="C-1", examiner="tester")
    half = case.index_path.with_name(case.index_path.name + ".new")
    half.write_bytes(b"\0" * 4096)  # what a kill during DuckDB's first write leaves
    assert not case.index_path.exists()
    con = connect(case)
    con.close()
    assert case.index_path.exists() and not half.exists()
    assert load_findings(case, "audit") == []
    # a truncated index in place (an earlier version's crash) is not mistaken for a new one
    case.index_path.write_bytes(b"\0" * 4096)
    with pytest.raises(duckdb.Error):
        connect(case)


DIES_IN_INIT = textwrap.dedent(
    """
    import os, sys
    from podmortem.case.store import Case
    # the process dies (no cleanup runs) after the first custody record, before the manifest
    Case._write_manifest = lambda self, *, sync: os._exit(9)
    Case.init(sys.argv[1], case_id="IR-10", examiner="carol")
    """
)


def test_death_while_a_case_is_created_leaves_no_half_case(tmp_path: Path) -> None:
    """The watch responder, SIGKILLed while it created a case, left a folder with a custody
    log and no manifest: every later run refused it (``already holds a case``) and could not
    open it either. A case folder now appears whole or not at all."""
    root = tmp_path / "cases" / "IR-10"
    proc = subprocess.run([sys.executable, "-c", DIES_IN_INIT, str(root)], check=False)
    assert proc.returncode == 9
    assert not root.exists()
    # what it was writing is in a hidden sibling, never mistaken for the case
    assert [p.name.startswith(".IR-10.creating-") for p in root.parent.iterdir()] == [True]
    case = Case.init(root, case_id="IR-10", examiner="carol")
    assert case.root == root
    assert verify_case(root).ok
    assert (root / "custody.jsonl").read_bytes().count(b"case_created") == 1


def test_a_case_folder_made_beforehand_is_used_in_place(tmp_path: Path) -> None:
    root = tmp_path / "IR-11"
    root.mkdir()
    case = Case.init(root, case_id="IR-11", examiner="carol")
    assert case.root == root and verify_case(root).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IR-11"]
