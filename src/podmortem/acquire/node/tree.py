"""Walking a directory tree that belongs to the attacker (an overlay upperdir, a tmpfs of the
container) without following any symlink out of it: every step is relative to a directory
fd opened with ``O_NOFOLLOW``, and files are opened non-blocking and checked to be regular
before they are read (a FIFO would hang us, a device would never end)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative to the walk's root, '/'-separated, no leading slash
    st: os.stat_result
    parent_fd: int
    name: str

    def open(self) -> int:
        """Open a regular file for reading (valid only during the walk's callback)."""
        fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.parent_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(22, "not a regular file", self.path)
        return fd

    def xattr(self, name: str) -> bytes | None:
        try:
            return os.getxattr(
                f"/proc/self/fd/{self.parent_fd}/{self.name}", name, follow_symlinks=False
            )
        except OSError:
            return None


def walk(
    root_fd: int,
    visit: Callable[[Entry], None],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    max_entries: int = 1_000_000,
) -> tuple[int, bool, list[str]]:
    """Depth-first walk under ``root_fd`` calling ``visit`` for every entry (directories
    before their contents). Returns (entries visited, complete?, errors)."""
    errors: list[str] = []
    count = 0

    def rec(dir_fd: int, prefix: str, depth: int) -> bool:
        nonlocal count
        try:
            names = sorted(os.listdir(dir_fd))
        except OSError as exc:
            errors.append(f"{prefix or '.'}: {exc.strerror}")
            return True
        for name in names:
            if should_stop() or count >= max_entries:
                return False
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError as exc:
                errors.append(f"{prefix}{name}: {exc.strerror}")
                continue
            count += 1
            entry = Entry(prefix + name, st, dir_fd, name)
            visit(entry)
            if stat.S_ISDIR(st.st_mode):
                if depth >= MAX_DEPTH:
                    errors.append(f"{prefix}{name}: deeper than {MAX_DEPTH}, not walked")
                    continue
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                except OSError as exc:
                    errors.append(f"{prefix}{name}: {exc.strerror}")
                    continue
                try:
                    if not rec(sub, f"{prefix}{name}/", depth + 1):
                        return False
                finally:
                    os.close(sub)
        return True

    complete = rec(root_fd, "", 0)
    return count, complete, errors


def iter_file(fd: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    while True:
        buf = os.read(fd, chunk)
        if not buf:
            return
        yield buf
