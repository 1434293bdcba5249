"""The container's writable layer, read from its overlay ``upperdir`` on the node.

Overlayfs semantics (Documentation/filesystems/overlayfs.rst): a file deleted from a lower
layer is a *whiteout*, a character device 0/0 in the upperdir; a directory replaced as a whole
carries the xattr ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` for unprivileged
mounts); anything else in the upperdir was added (no such path in any lower layer) or
modified (copied up from a lower layer). One pass hashes every regular file and streams it
into a tar of the upperdir that keeps xattrs (PAX ``SCHILY.xattr.*``, as GNU tar does).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from podmortem.acquire.node.mounts import Overlay
from podmortem.acquire.node.statx import birth_time
from podmortem.acquire.node.tree import Entry, walk


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


GROWTH_LIMIT = 64 << 20  # bytes read past a file's stat size before giving up on its hash
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "unknown"


@dataclass(slots=True)
class FsChange:
    path: str
    change: str  # added | modified | deleted
    type: str
    mode: str
    uid: int
    gid: int
    size: int
    mtime: str
    atime: str
    ctime: str
    btime: str | None = None  # birth time (statx), where the filesystem records it
    sha256: str | None = None
    link_target: str | None = None
    opaque: bool = False
    archived: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LayerCapture:
    upperdir: str
    changes: list[FsChange] = field(default_factory=list)
    complete: bool = True
    errors: list[str] = field(default_factory=list)
    archived_bytes: int = 0
    not_archived: list[str] = field(default_factory=list)
    # Directories present in a lower layer that the upperdir holds only because something
    # below them changed (overlay "copy-up"); runtimes list them as modified.
    copied_up: list[str] = field(default_factory=list)
    cut_files: list[str] = field(default_factory=list)  # hashing stopped by the budget


class _HashingReader:
    """Feeds tarfile exactly ``size`` bytes (the size its header promised) while hashing
    what the file really held; a file that shrank while we read it is padded with zeros
    and flagged, one that grew is cut at ``size``."""

    def __init__(self, fd: int, size: int, should_stop: Callable[[], bool]) -> None:
        self.fd = fd
        self.left = size
        self.sha = hashlib.sha256()
        self.short = False
        self.cut = False  # the budget ran out inside this file: the rest is zeros
        self.read_bytes = 0
        self._should_stop = should_stop

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        if want <= 0:
            return b""
        if not self.cut and self._should_stop():
            self.cut = True
        buf = b"" if self.short or self.cut else os.read(self.fd, want)
        if not buf:
            self.short = self.short or not self.cut
            buf = b"\0" * want
        else:
            self.sha.update(buf)
            self.read_bytes += len(buf)
        self.left -= len(buf)
        return buf


def _in_lower(lowerdirs: tuple[str, ...], rel: str) -> bool:
    for lower in lowerdirs:
        try:
            os.lstat(os.path.join(lower, rel))
            return True
        except OSError:
            continue
    return False


def capture(
    overlay: Overlay,
    archive: Writable | None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    max_archive_bytes: int = 1 << 30,
) -> LayerCapture:
    """Walk ``overlay.upperdir``: one :class:`FsChange` per changed path, and (if
    ``archive`` is given) a PAX tar of the upperdir streamed into it."""
    result = LayerCapture(upperdir=overlay.upperdir)
    tar = (
        tarfile.open(fileobj=cast(Any, archive), mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        if archive is not None
        else None
    )
    root_fd = os.open(overlay.upperdir, os.O_RDONLY | os.O_DIRECTORY)

    def visit(e: Entry) -> None:
        st = e.st
        kind = file_type(st.st_mode)
        whiteout = kind == "char" and st.st_rdev == 0
        opaque = kind == "dir" and any(e.xattr(x) == b"y" for x in OPAQUE_XATTRS)
        in_lower = _in_lower(overlay.lowerdirs, e.path)
        if whiteout:
            change = "deleted"
        elif in_lower:
            change = "modified"
        else:
            change = "added"
        rec = FsChange(
            path="/" + e.path,
            change=change,
            type="whiteout" if whiteout else kind,
            mode=oct(stat.S_IMODE(st.st_mode)),
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size if kind == "file" else 0,
            mtime=_iso(st.st_mtime),
            atime=_iso(st.st_atime),
            ctime=_iso(st.st_ctime),
            btime=birth_time(e.parent_fd, e.name),
            opaque=opaque,
        )
        if kind == "symlink":
            try:
                rec.link_target = os.readlink(e.name, dir_fd=e.parent_fd)
            except OSError as exc:
                rec.error = exc.strerror
        # A directory that exists below and was merely copied up to hold a changed child is
        # not itself a change (docker diff still lists it as "C"; see cross_check).
        listed = not (kind == "dir" and in_lower and not opaque)
        if listed:
            result.changes.append(rec)
        else:
            result.copied_up.append(rec.path)
        _archive_and_hash(e, rec, tar, result, max_archive_bytes, should_stop=should_stop)

    try:
        _count, complete, errors = walk(root_fd, visit, should_stop=should_stop)
    finally:
        os.close(root_fd)
        if tar is not None:
            tar.close()
    result.complete = complete and not result.cut_files
    result.errors.extend(errors)
    return result


def _tarinfo(e: Entry, rec: FsChange) -> tarfile.TarInfo:
    st = e.st
    ti = tarfile.TarInfo(e.path)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    kind = file_type(st.st_mode)
    ti.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "char": tarfile.CHRTYPE,
        "block": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }[kind]
    if kind == "symlink":
        ti.linkname = rec.link_target or ""
    if kind in ("char", "block"):
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if kind == "file":
        ti.size = st.st_size
    xattrs = {}
    try:
        names = os.listxattr(f"/proc/self/fd/{e.parent_fd}/{e.name}", follow_symlinks=False)
    except OSError:
        names = []
    for n in names:
        v = e.xattr(n)
        if v is not None:
            xattrs["SCHILY.xattr." + n] = v.decode("utf-8", "surrogateescape")
    ti.pax_headers = xattrs
    return ti


def _archive_and_hash(
    e: Entry,
    rec: FsChange,
    tar: tarfile.TarFile | None,
    result: LayerCapture,
    max_archive_bytes: int,
    *,
    should_stop: Callable[[], bool],
) -> None:
    kind = file_type(e.st.st_mode)
    if kind == "socket":
        return  # tar cannot hold a socket; the record still lists it
    fits = tar is not None and result.archived_bytes + e.st.st_size <= max_archive_bytes
    if kind != "file":
        if tar is not None:
            tar.addfile(_tarinfo(e, rec))
            rec.archived = True
        return
    try:
        fd = e.open()
    except OSError as exc:
        rec.error = f"open: {exc.strerror}"
        result.errors.append(f"{rec.path}: {exc.strerror}")
        return
    try:
        reader = _HashingReader(fd, e.st.st_size, should_stop)
        if tar is not None and fits:
            tar.addfile(_tarinfo(e, rec), reader)
            result.archived_bytes += e.st.st_size
            rec.archived = True
        else:
            if tar is not None:
                result.not_archived.append(rec.path)
            while reader.read(1 << 20):
                pass
        if reader.cut:
            # A hash of part of a file is not the file's hash: none is given.
            rec.error = f"budget ran out after {reader.read_bytes} of {e.st.st_size} bytes"
            result.cut_files.append(rec.path)
            return
        # Bytes beyond the size seen at stat time (the file grew) are hashed too, so the
        # hash is of what the file held when we read it; a file that keeps growing (written
        # as we read) is followed only while the budget and GROWTH_LIMIT allow.
        grown = 0
        while grown < GROWTH_LIMIT and (buf := os.read(fd, 1 << 20)):
            reader.sha.update(buf)
            grown += len(buf)
            rec.error = "file grew while read; archive holds the first st_size bytes"
            if should_stop():
                break
        if grown and (grown >= GROWTH_LIMIT or should_stop()):
            rec.error = "file kept growing while read; no hash"
            result.cut_files.append(rec.path)
            return
        if reader.short:
            rec.error = "file shrank while read; archive padded with zeros"
        rec.sha256 = reader.sha.hexdigest()
    finally:
        os.close(fd)


def cross_check(
    ours: list[FsChange],
    runtime: list[tuple[str, str]],
    scaffolding: frozenset[str] = frozenset(),
    copied_up: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """Compare with the runtime's own diff (path, change). Directories the runtime lists as
    modified only because a child changed are ignored, and so are ``scaffolding`` paths the
    runtime creates itself and leaves out of its diff (reported apart)."""
    mine = {c.path: c.change for c in ours if c.path not in scaffolding}
    theirs = dict(runtime)
    every = [c.path for c in ours]

    def explained(path: str, change: str) -> bool:
        if change != "modified":
            return False
        return path in copied_up or any(m.startswith(path.rstrip("/") + "/") for m in every)

    only_runtime = [p for p, ch in theirs.items() if p not in mine and not explained(p, ch)]
    only_ours = [p for p in mine if p not in theirs]
    differ = [p for p in mine if p in theirs and theirs[p] != mine[p]]
    return {
        "only_runtime": sorted(only_runtime),
        "only_podmortem": sorted(only_ours),
        "different_change": sorted(differ),
    }
