"""Process memory from ``/proc/<pid>/maps`` and ``/proc/<pid>/mem``, streamed and hashed.

Reading ``mem`` never stops or alters the process (it is ptrace-read access, no attach, no
SIGSTOP). The dump is the readable regions concatenated; the region list says where each
one sits in the dump, how much of it could be read, and its own SHA-256. Regions the kernel
refuses (``[vvar]``, guard pages, device mappings) are listed with the error, not skipped
silently.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from podmortem.acquire.bounded import lines, read_bounded

PROC = Path("/proc")
CHUNK = 1 << 20
# vvar is kernel data that faults on read; vsyscall is a fixed legacy page outside mem's reach.
UNREADABLE = frozenset({"[vvar]", "[vvar_vclock]", "[vsyscall]"})


@dataclass(slots=True)
class Region:
    start: int
    end: int
    perms: str
    offset: int
    device: str
    inode: int
    path: str
    dump_offset: int = 0
    bytes_read: int = 0
    sha256: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"], d["end"] = f"{self.start:x}", f"{self.end:x}"
        return d


def parse_maps(data: bytes) -> list[Region]:
    out = []
    for line in lines(data):
        f = line.split(None, 5)
        try:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            out.append(
                Region(lo, hi, f[1], int(f[2], 16), f[3], int(f[4]), f[5] if len(f) > 5 else "")
            )
        except (IndexError, ValueError):
            continue
    return out


def dump(
    pid: int,
    sink: Callable[[bytes], Any],
    *,
    proc: Path = PROC,
    should_stop: Callable[[], bool] = lambda: False,
    max_bytes: int = 8 << 30,
) -> tuple[list[Region], int, bool]:
    """Stream every readable region into ``sink``; returns (regions, bytes, complete)."""
    regions = parse_maps(read_bounded(proc / str(pid) / "maps", 64 << 20).data)
    total = 0
    complete = True
    fd = os.open(proc / str(pid) / "mem", os.O_RDONLY)
    try:
        for r in regions:
            r.dump_offset = total
            if not r.perms.startswith("r") or r.path in UNREADABLE:
                r.error = "not readable" if not r.perms.startswith("r") else "kernel page"
                continue
            if should_stop() or total >= max_bytes:
                r.error = "not read: budget exhausted"
                complete = False
                continue
            h = hashlib.sha256()
            addr = r.start
            while addr < r.end and total < max_bytes:
                want = min(CHUNK, r.end - addr, max_bytes - total)
                try:
                    buf = os.pread(fd, want, addr)
                except OSError as exc:
                    r.error = f"read at {addr:x}: {exc.strerror}"
                    break
                if not buf:
                    r.error = f"short read at {addr:x}"
                    break
                sink(buf)
                h.update(buf)
                addr += len(buf)
                total += len(buf)
                r.bytes_read += len(buf)
            r.sha256 = h.hexdigest()
    finally:
        os.close(fd)
    return regions, total, complete
