"""Follow an audit log file that the API server keeps appending to (``--audit-log-path``),
across rotation and truncation, handing out only complete lines.

The API server rotates with lumberjack: the file is renamed (``audit-<time>.log``, maybe
gzipped later) and a new one is created under the same name. logrotate may instead copy
and truncate it in place. So a position is the file's identity (device, inode) plus an
offset and a fingerprint of its first bytes:

- a different inode under the path: rotated. The old file is read to its end first (we keep
  it open; after a restart we look for it among the path's siblings by inode), then the new
  one from its start.
- same inode but shorter than our offset, or different first bytes: truncated (copytruncate).
  Read again from the start, and say so: what was written between the copy and the
  truncation is not in this file any more.

A line longer than ``max_line`` is skipped up to its newline and reported, never buffered.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from podmortem.watch.sources.base import Chunk

HEAD_BYTES = 256
MAX_LINE = 64 << 20  # the audit readers' own line limit


def _head(fd: int, upto: int) -> str:
    n = min(HEAD_BYTES, upto)
    return hashlib.sha256(os.pread(fd, n, 0)).hexdigest()[:32] if n > 0 else ""


class TailSource:
    """A file followed like ``tail -F``; positions survive restarts."""

    def __init__(self, path: Path | str, *, from_end: bool = False, max_line: int = MAX_LINE):
        self.path = Path(path)
        self.from_end = from_end
        self.max_line = max_line
        self._fd: int | None = None
        self._ino: tuple[int, int] = (0, 0)
        self._offset = 0
        self._head = ""
        self._notes: list[dict[str, Any]] = []
        self._pending: dict[str, Any] | None = None  # position to resume at (from state)

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    # ------------------------------------------------------------------ position

    def seek(self, position: dict[str, Any] | None) -> None:
        self.close()
        self._pending = dict(position) if position else None

    def commit(self, position: dict[str, Any]) -> None:
        # Nothing to release: the file is the durable buffer. The loop saves the position.
        return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _need(self) -> int:
        if self._fd is None:
            raise RuntimeError("no file open")  # a bug of ours, not of the input
        return self._fd

    def _position(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "dev": self._ino[0],
            "ino": self._ino[1],
            "offset": self._offset,
            "head": self._head,
        }

    def _open(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._notes.append({"event": "open-failed", "path": str(path), "error": str(exc)})
            return False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._notes.append({"event": "not-a-regular-file", "path": str(path)})
            return False
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)
        return True

    def _start(self) -> bool:
        """Open the file the saved position points at (the path, or a rotated sibling)."""
        pos, self._pending = self._pending, None
        if pos is not None:
            want = (int(pos.get("dev", 0)), int(pos.get("ino", 0)))
            for cand in self._candidates():
                try:
                    st = cand.stat()
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == want and self._open(cand):
                    self._offset = int(pos.get("offset", 0))
                    self._check_truncation(str(pos.get("head", "")))
                    if cand != self.path:
                        self._notes.append({"event": "resumed-in-rotated-file", "path": str(cand)})
                    return True
            self._notes.append(
                {
                    "event": "position-file-gone",
                    "message": "the file of the saved position was rotated away and is not"
                    " beside the path any more; its unread tail is lost",
                    "position": pos,
                }
            )
        if not self._open(self.path):
            return False
        fd = self._need()
        self._offset = os.fstat(fd).st_size if self.from_end and pos is None else 0
        self._head = _head(fd, self._offset)
        return True

    def _candidates(self) -> list[Path]:
        out = [self.path]
        with contextlib.suppress(OSError):
            out += sorted(
                p
                for p in self.path.parent.iterdir()
                if p.name.startswith(self.path.stem) and p != self.path and p.is_file()
            )
        return out

    def _next_file(self, after_mtime_ns: int) -> Path:
        """After a rotated file: the next rotated sibling written after it (when we fell
        behind by several rotations), else the live path. Compressed ones cannot be tailed:
        they are reported."""
        later: list[tuple[int, str, Path]] = []
        for cand in self._candidates()[1:]:
            try:
                st = cand.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == self._ino or st.st_mtime_ns < after_mtime_ns:
                continue
            if cand.suffix in (".gz", ".zst", ".bz2", ".xz"):
                self._notes.append({"event": "rotated-file-compressed", "path": str(cand)})
                continue
            later.append((st.st_mtime_ns, cand.name, cand))
        return min(later)[2] if later else self.path

    def _check_truncation(self, head: str) -> None:
        fd = self._need()
        size = os.fstat(fd).st_size
        if size < self._offset or (head and _head(fd, self._offset) != head):
            self._notes.append(
                {
                    "event": "truncated",
                    "path": str(self.path),
                    "offset_was": self._offset,
                    "size_now": size,
                    "message": "the file was truncated (copytruncate?): reading from its start;"
                    " lines written between the copy and the truncation are not in it",
                }
            )
            self._offset = 0
        self._head = _head(fd, self._offset)

    # ---------------------------------------------------------------------- read

    def poll(self, max_bytes: int) -> Chunk | None:
        if self._fd is None and not self._start():
            return self._only_notes()
        self._check_truncation(self._head)
        data = self._read_lines(max_bytes)
        if not data:
            rotated = self._rotated()
            if rotated:
                # The old file is read to its end: a last line without newline is complete
                # now (nobody writes to a rotated file), then follow the new file.
                tail = self._read_rest()
                done_mtime = os.fstat(self._need()).st_mtime_ns
                self.close()
                nxt = self._next_file(done_mtime)
                self._notes.append({"event": "rotated", "path": str(self.path), "next": str(nxt)})
                if self._open(nxt):
                    self._offset = 0
                    self._head = ""
                if tail:
                    return self._chunk(tail)
                return self.poll(max_bytes) if self._fd is not None else self._only_notes()
            return self._only_notes()
        return self._chunk(data)

    def _chunk(self, data: bytes) -> Chunk:
        notes, self._notes = self._notes, []
        if not data.endswith(b"\n"):
            data += b"\n"
        return Chunk(data, data.count(b"\n"), self._position(), notes)

    def _only_notes(self) -> Chunk | None:
        if not self._notes:
            return None
        notes, self._notes = self._notes, []
        return Chunk(b"", 0, self._position() if self._fd is not None else {}, notes)

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed, the new one not created yet: keep the old one
        return (st.st_dev, st.st_ino) != self._ino

    def _read_lines(self, max_bytes: int) -> bytes:
        fd = self._need()
        buf = os.pread(fd, max_bytes, self._offset)
        if not buf:
            return b""
        cut = buf.rfind(b"\n")
        if cut >= 0:
            data = buf[: cut + 1]
            self._advance(len(data))
            return data
        # No newline within max_bytes: one long line, or a line still being written.
        return self._long_line(len(buf), max_bytes)

    def _long_line(self, have: int, max_bytes: int) -> bytes:
        fd = self._need()
        probe = self._offset + have
        while probe - self._offset <= self.max_line:
            more = os.pread(fd, max(max_bytes, 1 << 20), probe)
            if not more:
                return b""  # incomplete: wait for the writer to finish it
            nl = more.find(b"\n")
            if nl >= 0:
                end = probe + nl + 1
                if end - self._offset > self.max_line:
                    break
                data = os.pread(fd, end - self._offset, self._offset)
                self._advance(len(data))
                return data
            probe += len(more)
        # Longer than max_line: skip it (up to its newline, when there is one) and report.
        start = self._offset
        while True:
            more = os.pread(fd, 1 << 20, probe)
            if not more:
                return b""  # the end of the oversized line is not written yet
            nl = more.find(b"\n")
            if nl >= 0:
                self._offset = probe + nl + 1
                self._notes.append(
                    {
                        "event": "line-too-long",
                        "offset": start,
                        "bytes": self._offset - start,
                        "limit": self.max_line,
                    }
                )
                self._head = _head(fd, self._offset)
                return b""
            probe += len(more)

    def _read_rest(self) -> bytes:
        fd = self._need()
        size = os.fstat(fd).st_size
        if size <= self._offset or size - self._offset > self.max_line:
            return b""
        data = os.pread(fd, size - self._offset, self._offset)
        self._advance(len(data))
        return data

    def _advance(self, n: int) -> None:
        fd = self._need()
        before = self._offset
        self._offset += n
        if before < HEAD_BYTES:
            self._head = _head(fd, self._offset)
