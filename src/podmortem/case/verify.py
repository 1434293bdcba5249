"""``case verify``: recompute every hash and walk the custody chain, and say precisely what
differs. The custody log is the authority; the manifest and ``hash_list.sha256`` are
derived from it and are checked against it.

Problems (tampering or loss) make verification fail. Warnings do not: an artifact that was
being written when the process died (``kill -9``) is named as incomplete, and a manifest
that lags the log because the writer died between the two writes is reported as such.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podmortem.case import paths
from podmortem.case.custody import GENESIS, ParsedLine, read_lines
from podmortem.case.store import CHUNK, load_manifest

# Problem kinds, stable strings that tests and JSON consumers match on.
ARTIFACT_MODIFIED = "artifact-modified"
ARTIFACT_MISSING = "artifact-missing"
FILE_UNRECORDED = "file-unrecorded"
CUSTODY_ALTERED = "custody-altered"
CUSTODY_REMOVED = "custody-removed"
CUSTODY_INSERTED = "custody-inserted"
CUSTODY_REORDERED = "custody-reordered"
CUSTODY_MISSING = "custody-missing"
MANIFEST_MISMATCH = "manifest-mismatch"
HASH_LIST_MISMATCH = "hash-list-mismatch"
HEAD_MISMATCH = "head-mismatch"
# Warning kinds.
ARTIFACT_INCOMPLETE = "artifact-incomplete"
MANIFEST_BEHIND = "manifest-behind"
LEFTOVER_TEMP = "leftover-temporary-file"
TORN_RECORD = "torn-record"


@dataclass(frozen=True, slots=True)
class Issue:
    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "detail": self.detail}


@dataclass(slots=True)
class VerifyReport:
    case_id: str
    problems: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    artifacts_checked: int = 0
    bytes_hashed: int = 0
    custody_records: int = 0
    custody_head: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "ok": self.ok,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [w.to_dict() for w in self.warnings],
            "artifacts_checked": self.artifacts_checked,
            "bytes_hashed": self.bytes_hashed,
            "custody_records": self.custody_records,
            "custody_head": self.custody_head,
        }


def verify_case(root: Path | str, *, expect_head: str | None = None) -> VerifyReport:
    root = Path(root)
    manifest = load_manifest(root)
    report = VerifyReport(case_id=str(manifest["case_id"]))
    log_path = root / paths.CUSTODY
    if not log_path.is_file():
        report.problems.append(Issue(CUSTODY_MISSING, paths.CUSTODY, "the custody log is gone"))
        lines: list[ParsedLine] = []
    else:
        data = log_path.read_bytes()
        lines = read_lines(data)
        if lines and not data.endswith(b"\n") and lines[-1].record is None:
            # A writer killed inside its append leaves a torn last line that was never
            # committed (the manifest never pointed at it); it is not tampering.
            report.warnings.append(
                Issue(
                    TORN_RECORD,
                    f"line {lines[-1].lineno}",
                    "torn final record of an interrupted append (never committed); ignored",
                )
            )
            lines = lines[:-1]
    report.custody_records = len(lines)
    report.custody_head = lines[-1].hash if lines else GENESIS

    _check_chain(lines, report)
    behind_from = _check_head(lines, manifest, report, expect_head)
    expected = _check_artifact_records(lines, manifest, report, behind_from)
    _check_hash_list(root, expected, report, behind_from)
    for rel, rec in expected.items():
        _check_artifact_file(root, rel, rec, report)
    _check_unrecorded(root, lines, expected, report)
    return report


def _check_chain(lines: list[ParsedLine], report: VerifyReport) -> None:
    """Classify every broken link as an altered, removed, inserted or reordered record."""
    n = len(lines)
    pos = {ln.hash: i for i, ln in enumerate(lines)}

    def pred(i: int) -> int | None:
        rec = lines[i].record
        if rec is None:
            return None
        return -1 if rec.prev == GENESIS else pos.get(rec.prev)

    preds = [pred(i) for i in range(n)]
    # A line whose successor links straight past it (to the line before it) was inserted.
    # A line whose successor links straight past it (to the line before it), and that no
    # record links to, was inserted, however well the forger linked it to its predecessor.
    referenced = {p for p in preds if p is not None}
    # (A record that links to a LATER line was moved, not inserted.)
    inserted = {
        i
        for i in range(n - 1)
        if preds[i + 1] == i - 1 and i not in referenced and not (preds[i] or -1) > i
    }

    def seq(i: int) -> int | None:
        rec = lines[i].record if 0 <= i < n else None
        return rec.seq if rec else None

    for i in range(n):
        ln = lines[i]
        where = f"line {ln.lineno}"
        if i in inserted:
            report.problems.append(
                Issue(CUSTODY_INSERTED, where, "record does not belong to the chain (inserted)")
            )
            continue
        if ln.record is None:
            report.problems.append(Issue(CUSTODY_ALTERED, where, f"not a valid record: {ln.error}"))
            continue
        expected = i - 1
        while expected in inserted:
            expected -= 1
        p = preds[i]
        if p == expected:
            continue
        if p is not None:
            report.problems.append(
                Issue(
                    CUSTODY_REORDERED,
                    f"{where} (seq {ln.record.seq})",
                    f"record belongs after line {lines[p].lineno if p >= 0 else 0}, "
                    f"found after line {lines[expected].lineno if expected >= 0 else 0}",
                )
            )
            continue
        before = seq(expected)
        two_before = seq(expected - 1)
        if expected < 0:
            report.problems.append(
                Issue(CUSTODY_REMOVED, where, f"records 0..{ln.record.seq - 1} before it removed")
            )
        elif before is not None and ln.record.seq == before + 1:
            report.problems.append(
                Issue(
                    CUSTODY_ALTERED,
                    f"line {lines[expected].lineno} (seq {before})",
                    "record content changed: its hash no longer matches the next record's link",
                )
            )
        elif two_before is not None and ln.record.seq == two_before + 2:
            report.problems.append(
                Issue(
                    CUSTODY_ALTERED,
                    f"line {lines[expected].lineno}",
                    "record content (including its sequence number) changed",
                )
            )
        elif before is not None and ln.record.seq > before + 1:
            report.problems.append(
                Issue(
                    CUSTODY_REMOVED,
                    f"before {where}",
                    f"records {before + 1}..{ln.record.seq - 1} removed",
                )
            )
        else:
            report.problems.append(
                Issue(CUSTODY_ALTERED, where, "link to the previous record is broken")
            )


def _check_head(
    lines: list[ParsedLine],
    manifest: dict[str, Any],
    report: VerifyReport,
    expect_head: str | None,
) -> int:
    """Check the manifest's head against the log. Returns the index of the first record the
    manifest has not yet seen (``len(lines)`` when it is current)."""
    n = len(lines)
    hashes = [ln.hash for ln in lines]
    head = str(manifest.get("custody_head"))
    if (
        expect_head is not None
        and expect_head not in hashes
        and not (expect_head == GENESIS and n == 0)
    ):
        report.problems.append(
            Issue(
                HEAD_MISMATCH,
                "custody log",
                f"the record with the expected head {expect_head[:16]}... is no longer in the log:"
                " the chain was rewritten or truncated",
            )
        )
    if n == 0:
        return 0
    if head == hashes[-1]:
        return n
    if head in hashes:
        k = hashes.index(head)
        report.warnings.append(
            Issue(
                MANIFEST_BEHIND,
                paths.MANIFEST,
                f"{n - k - 1} custody record(s) after the manifest's head: the writer stopped "
                "before sealing (interrupted), those records are verified from the log",
            )
        )
        return k + 1
    recorded = manifest.get("custody_records")
    last = lines[-1].record
    if isinstance(recorded, int) and last is not None and recorded > last.seq + 1:
        detail = f"records {last.seq + 1}..{recorded - 1} removed from the end of the log"
        report.problems.append(Issue(CUSTODY_REMOVED, "end of custody log", detail))
    elif isinstance(recorded, int) and last is not None and recorded == last.seq + 1:
        report.problems.append(
            Issue(
                CUSTODY_ALTERED,
                f"line {lines[-1].lineno} (seq {last.seq})",
                "the last record's content changed: it no longer matches the manifest's head",
            )
        )
    else:
        report.problems.append(
            Issue(
                HEAD_MISMATCH,
                f"line {lines[-1].lineno}",
                "the manifest's custody head matches no record: the log was rewritten",
            )
        )
    return n


def _check_artifact_records(
    lines: list[ParsedLine],
    manifest: dict[str, Any],
    report: VerifyReport,
    behind_from: int,
) -> dict[str, dict[str, Any]]:
    """Artifacts per the custody log, compared with the manifest's copy of them."""
    expected: dict[str, dict[str, Any]] = {}
    added_at: dict[str, int] = {}
    started: dict[str, dict[str, Any]] = {}
    for i, ln in enumerate(lines):
        rec = ln.record
        if rec is None:
            continue
        path = str(rec.details.get("path", ""))
        if rec.action == "artifact_started":
            started[path] = dict(rec.details)
        elif rec.action == "artifact_added":
            expected[path] = dict(rec.details)
            added_at[path] = i
            started.pop(path, None)
    for path, det in started.items():
        report.warnings.append(
            Issue(
                ARTIFACT_INCOMPLETE,
                path,
                f"artifact {det.get('name')!r} was being written when the writer stopped;"
                f" its partial data (unverified) is in {paths.PARTIAL_DIR}/{det.get('partial')}"
                " or at its path",
            )
        )
    in_manifest = {str(a.get("path")): a for a in manifest["artifacts"] if isinstance(a, dict)}
    for path, listed in in_manifest.items():
        log_rec = expected.get(path)
        if log_rec is None:
            report.problems.append(
                Issue(
                    MANIFEST_MISMATCH,
                    path,
                    "listed in the manifest but never recorded in the custody log",
                )
            )
        elif (log_rec.get("sha256"), log_rec.get("size")) != (
            listed.get("sha256"),
            listed.get("size"),
        ):
            report.problems.append(
                Issue(
                    MANIFEST_MISMATCH,
                    path,
                    "the manifest's hash or size differs from the custody log's",
                )
            )
    for path in expected:
        if path not in in_manifest and added_at[path] < behind_from:
            report.problems.append(
                Issue(
                    MANIFEST_MISMATCH,
                    path,
                    "recorded in the custody log but removed from the manifest",
                )
            )
    return expected


def _check_hash_list(
    root: Path, expected: dict[str, dict[str, Any]], report: VerifyReport, behind_from: int
) -> None:
    listed: dict[str, str] = {}
    try:
        text = (root / paths.HASH_LIST).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        report.problems.append(Issue(HASH_LIST_MISMATCH, paths.HASH_LIST, "missing"))
        return
    for n, line in enumerate(text.splitlines(), start=1):
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64:
            report.problems.append(Issue(HASH_LIST_MISMATCH, f"line {n}", "malformed line"))
            continue
        listed[path] = digest
    for path, digest in listed.items():
        want = expected.get(path, {}).get("sha256")
        if want != digest:
            report.problems.append(
                Issue(HASH_LIST_MISMATCH, path, "hash list entry differs from the custody log")
            )
    missing = [p for p in expected if p not in listed]
    if missing and behind_from >= report.custody_records:
        for path in missing:
            report.problems.append(Issue(HASH_LIST_MISMATCH, path, "absent from the hash list"))


def _check_artifact_file(root: Path, rel: str, rec: dict[str, Any], report: VerifyReport) -> None:
    report.artifacts_checked += 1
    target = root / rel
    if target.is_symlink() or not target.is_file():
        report.problems.append(Issue(ARTIFACT_MISSING, rel, "recorded artifact is missing"))
        return
    sha = hashlib.sha256()
    size = 0
    with open(target, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    report.bytes_hashed += size
    if sha.hexdigest() != rec.get("sha256") or size != rec.get("size"):
        report.problems.append(
            Issue(
                ARTIFACT_MODIFIED,
                rel,
                f"content changed: recorded sha256 {str(rec.get('sha256'))[:16]}... size "
                f"{rec.get('size')}, now {sha.hexdigest()[:16]}... size {size}",
            )
        )


def _walk(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            yield name if rel_dir == "." else f"{rel_dir}/{name}"


def _check_unrecorded(
    root: Path,
    lines: list[ParsedLine],
    expected: dict[str, dict[str, Any]],
    report: VerifyReport,
) -> None:
    partials = {
        f"{paths.PARTIAL_DIR}/{ln.record.details.get('partial')}"
        for ln in lines
        if ln.record is not None and ln.record.action == "artifact_started"
    }
    incomplete = {
        str(ln.record.details.get("path"))
        for ln in lines
        if ln.record is not None and ln.record.action == "artifact_started"
    } - set(expected)
    for rel in _walk(root):
        if rel in expected or rel in paths.STORE_FILES or rel in paths.DERIVED_FILES:
            continue
        if rel in incomplete:
            continue  # renamed into place, killed before it was recorded: named as incomplete
        if rel in partials:
            continue  # named by the incomplete-artifact warning (or a leftover of a failure)
        if "/" not in rel and rel.startswith(".") and rel.endswith(".tmp"):
            report.warnings.append(
                Issue(LEFTOVER_TEMP, rel, "temporary file of an interrupted manifest write")
            )
            continue
        report.problems.append(
            Issue(FILE_UNRECORDED, rel, "present in the case but recorded nowhere")
        )
