"""``case verify`` against generated tampering: every change is caught and named."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podmortem.case import Case, verify_case
from podmortem.case import verify as v

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

contents = st.lists(st.binary(min_size=1, max_size=2048), min_size=2, max_size=6)


def build(root: Path, blobs: list[bytes]) -> Case:
    case = Case.init(root, case_id="IR-7", examiner="bob")
    with case.batch():
        for i, blob in enumerate(blobs):
            case.add_bytes(f"dir{i % 2}/artifact{i}.bin", blob, source="node")
        case.log_action("analysis_run", {"analysis": "test"})
    assert verify_case(root).ok
    return case


def custody_lines(root: Path) -> list[bytes]:
    return (root / "custody.jsonl").read_bytes().splitlines()


def write_lines(root: Path, lines: list[bytes]) -> None:
    (root / "custody.jsonl").write_bytes(b"".join(ln + b"\n" for ln in lines))


@SETTINGS
@given(
    blobs=contents, which=st.integers(0, 100), offset=st.integers(0, 10_000), bit=st.integers(0, 7)
)
def test_one_flipped_bit_in_any_artifact_is_caught(
    blobs: list[bytes], which: int, offset: int, bit: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        case = build(Path(tmp) / "c", blobs)
        rec = case.artifacts[which % len(blobs)]
        target = case.root / rec.path
        data = bytearray(target.read_bytes())
        data[offset % len(data)] ^= 1 << bit
        target.write_bytes(bytes(data))
        report = verify_case(case.root)
        assert not report.ok
        assert [(p.kind, p.subject) for p in report.problems] == [(v.ARTIFACT_MODIFIED, rec.path)]


@SETTINGS
@given(
    blobs=contents, which=st.integers(0, 100), key=st.sampled_from(["time", "action", "details"])
)
def test_an_edited_custody_record_is_caught(blobs: list[bytes], which: int, key: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        case = build(Path(tmp) / "c", blobs)
        lines = custody_lines(case.root)
        i = which % len(lines)
        obj = json.loads(lines[i])
        obj[key] = {"forged": True} if key == "details" else "2020-01-01T00:00:00.000000Z"
        if key == "action":
            obj[key] = "artifact_removed"
        lines[i] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        write_lines(case.root, lines)
        report = verify_case(case.root)
        assert not report.ok
        altered = [p for p in report.problems if p.kind == v.CUSTODY_ALTERED]
        assert altered, report.problems
        assert f"line {i + 1}" in altered[0].subject


@SETTINGS
@given(blobs=contents, which=st.integers(0, 100))
def test_a_deleted_custody_record_is_caught(blobs: list[bytes], which: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        case = build(Path(tmp) / "c", blobs)
        lines = custody_lines(case.root)
        i = which % len(lines)
        del lines[i]
        write_lines(case.root, lines)
        report = verify_case(case.root)
        assert not report.ok
        removed = [p for p in report.problems if p.kind == v.CUSTODY_REMOVED]
        assert removed, report.problems
        assert f"{i}..{i}" in removed[0].detail


@SETTINGS
@given(blobs=contents, which=st.integers(0, 100), clever=st.booleans())
def test_an_inserted_custody_record_is_caught(blobs: list[bytes], which: int, clever: bool) -> None:
    """A forged record slipped into the chain, linked correctly to its predecessor when the
    forger is clever, is still caught because the next record skips over it."""
    from podmortem.case.custody import GENESIS, line_hash

    with tempfile.TemporaryDirectory() as tmp:
        case = build(Path(tmp) / "c", blobs)
        lines = custody_lines(case.root)
        i = which % len(lines)  # insert before line i (never appended at the end)
        prev = (line_hash(lines[i - 1]) if i else GENESIS) if clever else "f" * 64
        forged = {
            "seq": i,
            "time": "2020-01-01T00:00:00.000000Z",
            "action": "artifact_added",
            "details": {"path": "artifacts/planted"},
            "prev": prev,
        }
        lines.insert(i, json.dumps(forged, sort_keys=True, separators=(",", ":")).encode())
        write_lines(case.root, lines)
        report = verify_case(case.root)
        assert not report.ok
        inserted = [p for p in report.problems if p.kind == v.CUSTODY_INSERTED]
        assert inserted, report.problems
        assert inserted[0].subject == f"line {i + 1}"


@SETTINGS
@given(blobs=contents, which=st.integers(0, 100))
def test_reordered_custody_records_are_caught(blobs: list[bytes], which: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        case = build(Path(tmp) / "c", blobs)
        lines = custody_lines(case.root)
        i = which % (len(lines) - 1)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
        write_lines(case.root, lines)
        report = verify_case(case.root)
        assert not report.ok
        assert v.CUSTODY_REORDERED in report.kinds(), report.problems


@SETTINGS
@given(blobs=contents, which=st.integers(0, 100))
def test_a_removed_artifact_is_caught(blobs: list[bytes], which: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        case = build(Path(tmp) / "c", blobs)
        rec = case.artifacts[which % len(blobs)]
        (case.root / rec.path).unlink()
        report = verify_case(case.root)
        assert [(p.kind, p.subject) for p in report.problems] == [(v.ARTIFACT_MISSING, rec.path)]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)


@SETTINGS
@given(
    blobs=contents,
    where=st.sampled_from(["", "artifacts/", "artifacts/dir0/", "new/"]),
    name=names,
    data=st.binary(max_size=64),
)
def test_an_unrecorded_file_is_caught(
    blobs: list[bytes], where: str, name: str, data: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        case = build(Path(tmp) / "c", blobs)
        target = case.root / f"{where}{name}"
        if target.exists() or name in {".", ".."}:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        report = verify_case(case.root)
        rel = f"{where}{name}"
        if rel in {
            "case.json",
            "custody.jsonl",
            "hash_list.sha256",
            ".lock",
            "index.duckdb",
            "index.duckdb.wal",
        }:
            return
        assert (v.FILE_UNRECORDED, rel) in [(p.kind, p.subject) for p in report.problems]


def test_manifest_edited_to_match_a_tampered_artifact_is_caught(tmp_path: Path) -> None:
    case = build(tmp_path / "c", [b"one", b"two"])
    rec = case.artifacts[0]
    (case.root / rec.path).write_bytes(b"evil")
    m = json.loads((case.root / "case.json").read_text())
    import hashlib

    m["artifacts"][0]["sha256"] = hashlib.sha256(b"evil").hexdigest()
    m["artifacts"][0]["size"] = 4
    (case.root / "case.json").write_text(json.dumps(m))
    kinds = verify_case(case.root).kinds()
    assert {v.ARTIFACT_MODIFIED, v.MANIFEST_MISMATCH} <= kinds


def test_expected_head_catches_a_rewritten_chain(tmp_path: Path) -> None:
    case = build(tmp_path / "c", [b"one", b"two"])
    head = case.custody_head
    assert verify_case(case.root, expect_head=head).ok
    assert not verify_case(case.root, expect_head="a" * 64).ok
