"""Reading a file of the container through ``/proc/<pid>/root`` without leaving it.

``/proc/<pid>/root`` jumps into the container's root, but an absolute symlink met after that
jump is resolved against OUR root: a hostile container whose ``/etc/passwd`` links to
``/root/.ssh/id_rsa`` would make a naive ``open()`` copy the node's key into the case. So paths
are walked one component at a time with ``O_NOFOLLOW``, symlinks are expanded by hand against
the container root, and ``..`` never climbs above it (what ``openat2(RESOLVE_IN_ROOT)`` does).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from podmortem.acquire.bounded import Bounded

MAX_SYMLINKS = 40


def open_in_root(root: Path | str, path: str, *, flags: int = os.O_RDONLY) -> int:
    """Open ``path`` (absolute, as the container sees it) inside ``root``; returns an fd.

    Raises ``OSError`` (ENOENT, ELOOP, ...) like ``open``."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        return _walk(root_fd, path, flags)
    finally:
        os.close(root_fd)


def _walk(root_fd: int, path: str, flags: int) -> int:
    pending = [p for p in path.split("/") if p not in ("", ".")]
    stack: list[int] = []  # fds of the directories above the current one
    cur = os.dup(root_fd)
    links = 0
    try:
        while pending:
            part = pending.pop(0)
            if part == "..":
                if stack:
                    os.close(cur)
                    cur = stack.pop()
                continue
            last = not pending
            fd = os.open(part, os.O_PATH | os.O_NOFOLLOW, dir_fd=cur)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(40, "too many symbolic links", path)  # ELOOP
                target = os.readlink(part, dir_fd=cur)
                if target.startswith("/"):
                    for d in stack:
                        os.close(d)
                    stack.clear()
                    os.close(cur)
                    cur = os.dup(root_fd)
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if last:
                if stat.S_ISDIR(st.st_mode) and not flags & os.O_DIRECTORY:
                    os.close(fd)
                    raise IsADirectoryError(21, "is a directory", path)
                if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                    # A FIFO would block the open itself, a device would never end.
                    os.close(fd)
                    raise OSError(22, "not a regular file", path)
                # Re-open the O_PATH handle for reading through /proc/self/fd: no second
                # lookup by name, so nothing can be swapped in between.
                try:
                    return os.open(f"/proc/self/fd/{fd}", flags)
                finally:
                    os.close(fd)
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise NotADirectoryError(20, "not a directory", path)
            stack.append(cur)
            cur = fd
        # The path named the root itself.
        return os.open(f"/proc/self/fd/{cur}", flags | os.O_DIRECTORY)
    finally:
        os.close(cur)
        for d in stack:
            os.close(d)


def read_in_root(root: Path | str, path: str, limit: int) -> Bounded:
    fd = open_in_root(root, path)
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            # A FIFO or device would block or never end.
            raise OSError(22, "not a regular file", path)
        data = fh.read(limit)
        more = bool(fh.read(1)) if len(data) == limit else False
    return Bounded(data, more)
