"""The case store: write-once artifacts, manifest, hash list, custody chain."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from pathlib import Path

import pytest

from podmortem.case import Case, export_case, verify_case
from podmortem.case.custody import GENESIS, read_lines
from podmortem.case.index import load_findings, store_findings
from podmortem.errors import ArtifactExistsError, CaseExistsError, InputError, NotACaseError
from podmortem.findings import Caveat, Finding, Provenance, Severity


def new_case(tmp_path: Path) -> Case:
    return Case.init(tmp_path / "case", case_id="IR-42", examiner="alice", description="t")


def test_artifact_record_holds_everything_the_manifest_promises(tmp_path: Path) -> None:
    case = new_case(tmp_path)
    with case.artifact(
        "proc/1/environ", source="node", command="read /proc/1/environ", sensitive=True
    ) as w:
        w.write(b"A=1\0B=2\0")
        w.exit_status = 0
    rec = case.get("proc/1/environ")
    assert rec.sha256 == hashlib.sha256(b"A=1\0B=2\0").hexdigest()
    assert rec.size == 8
    assert rec.path == "artifacts/proc/1/environ"
    assert rec.source == "node"
    assert rec.sensitive is True
    assert rec.command == "read /proc/1/environ"
    assert rec.exit_status == 0
    assert rec.collected_at.endswith("Z") and len(rec.collected_at.split(".")[1]) == 7
    assert rec.monotonic_offset_s >= 0
    assert rec.tool_version
    manifest = json.loads((case.root / "case.json").read_text())
    assert manifest["artifacts"][0]["sha256"] == rec.sha256
    assert (
        manifest["custody_head"] == read_lines((case.root / "custody.jsonl").read_bytes())[-1].hash
    )


def test_hash_list_is_checkable_by_coreutils(tmp_path: Path) -> None:
    case = new_case(tmp_path)
    case.add_bytes("a.txt", b"alpha", source="file")
    case.add_bytes("dir/b.bin", bytes(range(256)) * 100, source="api")
    out = subprocess.run(
        ["sha256sum", "-c", "hash_list.sha256"],
        cwd=case.root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.count(": OK") == 2


def test_custody_chain_links_every_record(tmp_path: Path) -> None:
    # A later process opening the case logs its own session before its first action.
    case = Case.open(new_case(tmp_path).root)
    case.add_bytes("a", b"1", source="file")
    case.log_action("analysis_run", {"analysis": "audit"})
    lines = read_lines((case.root / "custody.jsonl").read_bytes())
    assert [ln.record.action for ln in lines if ln.record] == [
        "case_created",
        "session_started",
        "artifact_started",
        "artifact_added",
        "analysis_run",
    ]
    prev = GENESIS
    for i, ln in enumerate(lines):
        assert ln.record is not None and ln.record.seq == i and ln.record.prev == prev
        prev = ln.hash


def test_artifacts_are_write_once(tmp_path: Path) -> None:
    case = new_case(tmp_path)
    case.add_bytes("x", b"1", source="file")
    with pytest.raises(ArtifactExistsError):
        case.add_bytes("x", b"2", source="file")
    assert (case.root / "artifacts/x").read_bytes() == b"1"


@pytest.mark.parametrize(
    "bad", ["../escape", "/abs", "a/../../b", "a\nb", "a\\b", ".partial/x", ""]
)
def test_unsafe_artifact_paths_are_refused(tmp_path: Path, bad: str) -> None:
    case = new_case(tmp_path)
    with pytest.raises(InputError):
        case.add_bytes(bad, b"1", source="file")
    assert verify_case(case.root).ok


def test_init_refuses_an_existing_case_and_touches_nothing(tmp_path: Path) -> None:
    case = new_case(tmp_path)
    case.add_bytes("a", b"1", source="file")
    before = {p: p.read_bytes() for p in case.root.rglob("*") if p.is_file()}
    with pytest.raises(CaseExistsError):
        Case.init(case.root, case_id="other", examiner="mallory")
    after = {p: p.read_bytes() for p in case.root.rglob("*") if p.is_file()}
    assert before == after


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("mine")
    with pytest.raises(CaseExistsError):
        Case.init(tmp_path / "d", case_id="1", examiner="a")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["keep"]


@pytest.mark.parametrize(
    "content",
    [None, b"", b"{not json", b'{"format": "podmortem-case/1"', b"[]", b'{"format": "other"}'],
)
def test_open_rejects_non_cases_with_one_line_errors(tmp_path: Path, content: bytes | None) -> None:
    root = tmp_path / "c"
    root.mkdir()
    if content is not None:
        (root / "case.json").write_bytes(content)
    with pytest.raises(NotACaseError) as err:
        Case.open(root)
    assert "\n" not in err.value.message


def test_failed_writer_keeps_partial_capture_with_error(tmp_path: Path) -> None:
    case = new_case(tmp_path)
    with pytest.raises(RuntimeError), case.artifact("ps.txt", source="in-container") as w:
        w.write(b"PID CMD\n1 sh\n")
        raise RuntimeError("target exited")
    rec = case.get("ps.txt")
    assert rec.error == "RuntimeError: target exited"
    assert rec.size == 13
    assert verify_case(case.root).ok


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    case = new_case(tmp_path)

    def worker(n: int) -> None:
        for i in range(20):
            case.add_bytes(f"t{n}/a{i}", f"{n}-{i}".encode() * 100, source="node")

    with case.batch():
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    report = verify_case(case.root)
    assert report.ok, report.problems
    assert report.artifacts_checked == 80
    assert not report.warnings


def test_two_processes_append_to_one_chain(tmp_path: Path) -> None:
    first = new_case(tmp_path)
    second = Case.open(first.root)
    first.add_bytes("one", b"1", source="file")
    second.add_bytes("two", b"2", source="file")
    first.add_bytes("three", b"3", source="file")
    report = verify_case(first.root)
    assert report.ok, report.problems
    assert {a.name for a in Case.open(first.root).artifacts} == {"one", "two", "three"}


def test_export_records_archive_hash(tmp_path: Path) -> None:
    case = new_case(tmp_path)
    case.add_bytes("a", b"alpha" * 1000, source="file")
    for suffix, zstd in ((".tar", False), (".tar.zst", True)):
        out = tmp_path / f"export{suffix}"
        det = export_case(case, out)
        assert det["compression"] == ("zstd" if zstd else "none")
        assert hashlib.sha256(out.read_bytes()).hexdigest() == det["sha256"]
        assert (tmp_path / f"export{suffix}.sha256").read_text().startswith(det["sha256"])
    actions = [
        ln.record.action
        for ln in read_lines((case.root / "custody.jsonl").read_bytes())
        if ln.record
    ]
    assert actions.count("case_exported") == 2
    assert verify_case(case.root).ok


def test_export_tar_contains_the_case(tmp_path: Path) -> None:
    import tarfile

    case = new_case(tmp_path)
    case.add_bytes("a", b"alpha", source="file")
    out = tmp_path / "e.tar"
    export_case(case, out)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert {
        "IR-42/case.json",
        "IR-42/custody.jsonl",
        "IR-42/hash_list.sha256",
        "IR-42/artifacts/a",
    } <= names


def test_export_refuses_to_write_inside_the_case(tmp_path: Path) -> None:
    case = new_case(tmp_path)
    with pytest.raises(InputError):
        export_case(case, case.root / "artifacts" / "self.tar")


def test_index_round_trips_findings(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    case = new_case(tmp_path)
    f = Finding(
        rule_id="k8s-exec",
        title="Exec into pod",
        severity=Severity.HIGH,
        techniques=("T1609",),
        time=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        subject="alice",
        evidence=("audit:123",),
        provenance=Provenance("audit", "native", "artifacts/a.jsonl", ("line 3",)),
    )
    store_findings(case, "audit", [f], [Caveat("truncated", "cut")])
    (back,) = load_findings(case, "audit")
    assert back == f
    assert verify_case(case.root).ok  # the index is derived data, not an unrecorded file
