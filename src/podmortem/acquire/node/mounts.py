"""``/proc/<pid>/mountinfo`` decoded: where the container's writable layer is (the overlay
``upperdir=``, for any runtime), and which mounts are RAM-backed (tmpfs, ramfs)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from podmortem.acquire.bounded import lines

_OCTAL = re.compile(r"\\([0-7]{3})")
RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
# Mounted tmpfs that hold kernel-made nodes rather than anything the workload wrote.
PSEUDO_TMPFS = frozenset({"/dev", "/sys/fs/cgroup", "/proc/acpi", "/proc/scsi", "/sys/firmware"})


def unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), s)


@dataclass(slots=True)
class Mount:
    mount_id: int
    parent_id: int
    device: str
    root: str
    mount_point: str
    options: str
    fstype: str
    source: str
    super_options: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split_super(opts: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in opts.split(","):
        k, _, v = item.partition("=")
        # lowerdir stays escaped: its layers are separated by ':' while a ':' inside a path
        # is shown as \072; unescaping first would merge the two (see root_overlay).
        out[unescape(k)] = v if k == "lowerdir" else unescape(v)
    return out


def parse_mountinfo(data: bytes) -> tuple[list[Mount], int]:
    mounts: list[Mount] = []
    bad = 0
    for line in lines(data):
        head, sep, tail = line.partition(" - ")
        f = head.split(" ")  # single spaces; a name may hold other whitespace
        t = tail.split(" ", 2)
        if not sep or len(f) < 6 or len(t) < 2:
            bad += 1
            continue
        try:
            mounts.append(
                Mount(
                    mount_id=int(f[0]),
                    parent_id=int(f[1]),
                    device=f[2],
                    root=unescape(f[3]),
                    mount_point=unescape(f[4]),
                    options=f[5],
                    fstype=t[0],
                    source=unescape(t[1]),
                    super_options=_split_super(t[2]) if len(t) > 2 else {},
                )
            )
        except ValueError:
            bad += 1
    return mounts, bad


@dataclass(frozen=True, slots=True)
class Overlay:
    upperdir: str
    lowerdirs: tuple[str, ...]
    workdir: str


def root_overlay(mounts: list[Mount]) -> Overlay | None:
    """The overlay mounted on ``/`` (the last one wins: later mounts shadow earlier ones)."""
    for m in reversed(mounts):
        if m.mount_point == "/" and m.fstype == "overlay" and "upperdir" in m.super_options:
            lower = m.super_options.get("lowerdir", "")
            parts = tuple(unescape(p) for p in lower.split(":") if p)
            return Overlay(m.super_options["upperdir"], parts, m.super_options.get("workdir", ""))
    return None


def ram_backed(mounts: list[Mount]) -> list[Mount]:
    return [m for m in mounts if m.fstype in RAM_FILESYSTEMS and m.mount_point not in PSEUDO_TMPFS]
