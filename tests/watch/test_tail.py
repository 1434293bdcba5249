"""The tailing source across rotation (rename + new file, also while stopped), truncation
(copytruncate), lines still being written, and oversized lines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from podmortem.watch.sources.tail import TailSource

Position = dict[str, Any]


def drain(src: TailSource, max_bytes: int = 1 << 16) -> tuple[list[bytes], list[str]]:
    lines: list[bytes] = []
    notes: list[str] = []
    for _ in range(1000):
        c = src.poll(max_bytes)
        if c is None:
            break
        lines += [x for x in c.data.split(b"\n") if x]
        notes += [n["event"] for n in c.notes]
    return lines, notes


def stopped_after_first_chunk(f: Path, content: bytes) -> Position:
    """Write ``content``, read one chunk and stop: the position a restart resumes from."""
    f.write_bytes(content)
    src = TailSource(f)
    c = src.poll(1 << 16)
    assert c is not None
    src.close()
    return c.position


def resumed(f: Path, position: Position) -> tuple[list[bytes], list[str]]:
    """A new source over ``f`` (a restart) from ``position``, drained."""
    again = TailSource(f)
    again.seek(position)
    return drain(again)


def test_partial_line_waits_until_complete(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b'{"a":1}\n{"a":')
    src = TailSource(f)
    assert drain(src)[0] == [b'{"a":1}']
    with f.open("ab") as fh:
        fh.write(b"2}\n")
    assert drain(src)[0] == [b'{"a":2}']


def test_rotation_reads_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b"1\n2\n")
    src = TailSource(f)
    assert drain(src)[0] == [b"1", b"2"]
    with f.open("ab") as fh:
        fh.write(b"3\n4")  # the last line has no newline when the file is rotated
    os.rename(f, tmp_path / "audit-2026-11-20T10-00-00.000.log")
    f.write_bytes(b"5\n")
    lines, notes = drain(src)
    assert lines == [b"3", b"4", b"5"]
    assert "rotated" in notes


def test_rotation_while_stopped_resumes_in_the_rotated_file(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    pos = stopped_after_first_chunk(f, b"1\n2\n")
    with f.open("ab") as fh:
        fh.write(b"3\n")
    os.rename(f, tmp_path / "audit-1.log")
    f.write_bytes(b"4\n")
    lines, notes = resumed(f, pos)
    assert lines == [b"3", b"4"]
    assert "resumed-in-rotated-file" in notes


def test_rotated_away_and_gone_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    pos = stopped_after_first_chunk(f, b"1\n")
    (tmp_path / "new").write_bytes(b"9\n")  # created while the old one exists: a new inode
    f.unlink()
    os.rename(tmp_path / "new", f)
    lines, notes = resumed(f, pos)
    assert lines == [b"9"]
    assert "position-file-gone" in notes


def test_inode_reused_by_a_new_file_is_caught_by_the_head_fingerprint(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    pos = stopped_after_first_chunk(f, b"first-1\nfirst-2\n")
    f.unlink()
    f.write_bytes(b"second-1\nsecond-2\nsecond-3\n")  # the filesystem may reuse the inode
    lines, _ = resumed(f, pos)
    assert lines == [b"second-1", b"second-2", b"second-3"]


def test_truncation_restarts_from_the_start(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b"a" * 300 + b"\nb\n")
    src = TailSource(f)
    assert len(drain(src)[0]) == 2
    with f.open("r+b") as fh:  # copytruncate, then new lines (fewer bytes than before)
        fh.truncate(0)
    with f.open("ab") as fh:
        fh.write(b"c\n")
    lines, notes = drain(src)
    assert lines == [b"c"]
    assert "truncated" in notes


def test_truncation_refilled_beyond_the_offset_is_seen(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b"x1\nx2\n")
    src = TailSource(f)
    drain(src)
    with f.open("r+b") as fh:
        fh.truncate(0)
    f.write_bytes(b"y1 longer than before\ny2\n")  # same inode, size now beyond the offset
    lines, notes = drain(src)
    assert lines == [b"y1 longer than before", b"y2"]
    assert "truncated" in notes


def test_line_longer_than_the_limit_is_skipped_and_reported(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b"ok1\n" + b"z" * 5000 + b"\nok2\n")
    src = TailSource(f, max_line=1000)
    lines, notes = drain(src, max_bytes=512)
    assert lines == [b"ok1", b"ok2"]
    assert "line-too-long" in notes


def test_from_end_starts_at_the_end_without_a_position(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b"old\n")
    src = TailSource(f, from_end=True)
    assert drain(src)[0] == []
    with f.open("ab") as fh:
        fh.write(b"new\n")
    assert drain(src)[0] == [b"new"]


def test_several_rotations_while_behind_are_read_in_order(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b"1\n")
    src = TailSource(f)
    assert drain(src)[0] == [b"1"]
    for k in range(2, 5):  # three rotations before the next poll
        with f.open("ab") as fh:
            fh.write(f"{k}\n".encode())
        os.rename(f, tmp_path / f"audit-{k:03d}.log")
        f.write_bytes(b"")
    with f.open("ab") as fh:
        fh.write(b"5\n")
    lines, _ = drain(src)
    assert lines == [b"2", b"3", b"4", b"5"]


def test_compressed_rotated_file_is_reported_not_read(tmp_path: Path) -> None:
    f = tmp_path / "audit.log"
    f.write_bytes(b"1\n")
    src = TailSource(f)
    drain(src)
    with f.open("ab") as fh:
        fh.write(b"2\n")
    os.rename(f, tmp_path / "audit-001.log")
    (tmp_path / "audit-000.log.gz").write_bytes(b"\x1f\x8b")
    os.utime(tmp_path / "audit-000.log.gz")
    f.write_bytes(b"3\n")
    lines, notes = drain(src)
    assert lines == [b"2", b"3"]
    assert "rotated-file-compressed" in notes
