"""Read one layer blob into :class:`Entry` records, in one streaming pass.

The blob is hashed as it is read (its digest), decompressed (compression sniffed), hashed
again (its diff_id) and walked as a tar; every regular file is hashed (sha256; md5 and sha1
too for executables, which is what dpkg and apk record) and shown to an :class:`Inspector`
that may look at a bounded prefix of its content. Hostile members become hits, never files:
nothing here creates anything on disk.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from dataclasses import dataclass
from typing import Any, Protocol

from podmortem.image.catalog import Notes
from podmortem.image.limits import Limits
from podmortem.image.model import Entry, Layer
from podmortem.image.stream import (
    BoundedReader,
    CorruptStream,
    DecompressionBomb,
    FileHasher,
    HashingReader,
    Readable,
    open_layer,
)
from podmortem.image.tarstream import TarError, TarWalker

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
ELF_MAGIC = b"\x7fELF"
MAX_HITS_PER_KIND = 20
# The device nodes debootstrap and distribution rootfs tarballs create; a runtime mounts its
# own /dev over them, so they are expected, not hostile.
STANDARD_DEVICES = {
    "/dev/null": (1, 3),
    "/dev/zero": (1, 5),
    "/dev/full": (1, 7),
    "/dev/random": (1, 8),
    "/dev/urandom": (1, 9),
    "/dev/tty": (5, 0),
    "/dev/console": (5, 1),
    "/dev/ptmx": (5, 2),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """How much of a file's content an inspector wants: a prefix for indicators, the
    whole file (bounded) for databases, and for YARA."""

    head: int = 0
    capture: int = 0
    yara: int = 0
    # literal strings to look for in the WHOLE file as it streams past (executables)
    needles: tuple[bytes, ...] = ()

    @property
    def want(self) -> int:
        return max(self.head, self.capture, self.yara)


NO_PLAN = Plan()


class Inspector(Protocol):
    def plan(self, entry: Entry) -> Plan: ...

    def visit(self, entry: Entry, data: bytes, complete: bool) -> None: ...


@dataclass(slots=True)
class LayerRead:
    entries: list[Entry]
    digest: str
    diff_id: str
    compression: str
    complete: bool
    stored_bytes: int
    tar_bytes: int


def member_path(name: str) -> tuple[str, bool, bool]:
    """Normalise a member name to an absolute path the way containerd applies layers
    (``filepath.Join("/", name)``: ``./`` prefixes dropped, ``..`` clamped at the root).
    Returns ``(path, was_absolute, had_dotdot)``."""
    absolute = name.startswith("/")
    dotdot = ".." in name and ".." in name.split("/")
    plain = "/" + (name[2:] if name.startswith("./") else name)
    if not ("//" in plain or "/./" in plain or "/../" in plain or plain.endswith(_NOT_NORMAL)):
        return plain, absolute, dotdot  # already normal: what normpath would return
    path = posixpath.normpath("/" + name)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path, absolute, dotdot


_NOT_NORMAL = ("/", "/.", "/..")


def link_escapes(path: str, target: str) -> bool:
    """Does a relative symlink climb above the root from where it sits?"""
    if target.startswith("/"):
        return False
    depth = path.count("/") - 1  # components of the parent directory
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


class _Counter:
    def __init__(self, notes: Notes, layer: int) -> None:
        self.notes = notes
        self.layer = layer
        self.counts: dict[str, int] = {}

    def hit(self, rule_id: str, summary: str, path: str, evidence: tuple[str, ...] = ()) -> None:
        n = self.counts.get(rule_id, 0) + 1
        self.counts[rule_id] = n
        if n <= MAX_HITS_PER_KIND:
            self.notes.hit(rule_id, summary, path=path, layer=self.layer, evidence=evidence)

    def summarise(self) -> None:
        for rule_id, n in self.counts.items():
            if n > MAX_HITS_PER_KIND:
                self.notes.caveat(
                    "hits-capped",
                    f"layer {self.layer}: {n} members matched {rule_id}; the first "
                    f"{MAX_HITS_PER_KIND} are reported",
                    rule_id=rule_id,
                    count=n,
                )


def read_layer(
    raw: Readable,
    layer: Layer,
    *,
    limits: Limits,
    notes: Notes,
    inspector: Inspector | None = None,
    deadline: float | None = None,
    member_budget: int | None = None,
) -> LayerRead:
    """Read one layer. Always hashes the whole blob (even when parsing stops early) so the
    digest and diff_id checks hold; parsing stops at a bad header, the member bound or the
    deadline, with a hit or caveat saying so."""
    idx = layer.index
    counter = _Counter(notes, idx)
    blob = HashingReader(raw)
    allowance = limits.layer_allowance(layer.size or 0)
    compression, tar_src = open_layer(blob)
    entries: list[Entry] = []
    complete = False
    uncompressed: HashingReader | None = None
    if compression in ("gzip", "zstd"):
        uncompressed = HashingReader(BoundedReader(tar_src, allowance))
        tar_reader: Readable = uncompressed
    else:
        tar_reader = BoundedReader(tar_src, allowance)
    budget = limits.max_members if member_budget is None else member_budget
    hashed_fully = False
    hasher = FileHasher()
    links: list[tuple[Entry, Entry]] = []
    try:
        if compression not in ("gzip", "zstd", "tar", "empty"):
            notes.hit(
                "image.archive.unknown_layer_format",
                f"layer {idx} is {compression}, not a tar podmortem can read; not parsed",
                layer=idx,
            )
        elif compression != "empty":
            complete = _walk(
                TarWalker(tar_reader, max_header_bytes=limits.max_header_bytes),
                idx,
                entries,
                limits,
                counter,
                inspector,
                deadline,
                budget,
                hasher,
                links,
            )
        _drain(tar_reader)
        _drain(blob)
        hashed_fully = True
    except DecompressionBomb as exc:
        complete = False
        notes.hit(
            "image.archive.decompression_bomb",
            f"layer {idx}: {exc}; the rest of the layer was not read",
            layer=idx,
            evidence=(f"blob size {layer.size}", f"allowance {allowance}"),
        )
    except CorruptStream as exc:
        complete = False
        notes.hit("image.archive.corrupt_layer", f"layer {idx}: {exc}", layer=idx)
    finally:
        counter.summarise()
        hasher.close()
        # hardlinks share their target's content: its digests are known only now
        for entry, src in links:
            entry.sha256, entry.md5, entry.sha1 = src.sha256, src.md5, src.sha1
    if not hashed_fully:
        _drain(blob)  # the blob digest still covers every stored byte
    digest = "sha256:" + blob.hash.hexdigest()
    diff_id = "sha256:" + uncompressed.hash.hexdigest() if uncompressed else digest
    if not hashed_fully or compression not in ("tar", "gzip", "zstd", "empty"):
        # A stream we could not decompress to its end has no diff_id we could vouch for.
        diff_id = ""
    return LayerRead(
        entries=entries,
        digest=digest,
        diff_id=diff_id,
        compression=compression,
        complete=complete,
        stored_bytes=blob.size,
        tar_bytes=uncompressed.size if uncompressed else blob.size,
    )


def _drain(src: Readable) -> None:
    while src.read(1 << 20):
        pass


def _walk(  # noqa: PLR0917 - internal helper of read_layer
    walker: TarWalker,
    idx: int,
    entries: list[Entry],
    limits: Limits,
    counter: _Counter,
    inspector: Inspector | None,
    deadline: float | None,
    budget: int,
    hasher: FileHasher,
    links: list[tuple[Entry, Entry]],
) -> bool:
    seen: dict[str, Entry] = {}
    walker.verify_all = limits.verify_all_digests
    try:
        for n, m in enumerate(walker):
            if n >= budget and budget == 0:
                counter.notes.caveat(
                    "member-budget",
                    f"layer {idx} was hashed but not analysed: earlier layers used up the"
                    " image's member budget",
                )
                return False
            if n >= budget:
                counter.notes.hit(
                    "image.archive.too_many_members",
                    f"layer {idx} has more than {budget} members; the rest were hashed but"
                    " not analysed",
                    layer=idx,
                )
                return False
            if deadline is not None and not n % 256 and time.monotonic() > deadline:
                counter.notes.caveat(
                    "time-budget",
                    f"layer {idx}: the time budget ran out after {n} members; the rest was"
                    " hashed but not analysed",
                )
                return False
            name = m.name
            if len(name) > limits.max_path_length or name.count("/") > limits.max_path_depth:
                counter.hit(
                    "image.archive.deep_path",
                    f"a member name of {len(name)} characters and {name.count('/')} levels"
                    " was not analysed",
                    path="/" + name[:200].lstrip("/"),
                    evidence=(f"length {len(name)}", f"depth {name.count('/')}"),
                )
                continue
            path, absolute, dotdot = member_path(name)
            if dotdot:
                counter.hit(
                    "image.archive.path_traversal",
                    f"member {name[:300]!r} climbs with '..'; runtimes clamp it to {path}",
                    path=path,
                    evidence=(repr(name[:300]),),
                )
            elif absolute:
                counter.hit(
                    "image.archive.absolute_path",
                    f"member {name[:300]!r} is absolute",
                    path=path,
                    evidence=(repr(name[:300]),),
                )
            if path == "/":
                continue
            base = posixpath.basename(path)
            kind = m.type
            if base.startswith(WHITEOUT):
                parent = posixpath.dirname(path)
                if base == OPAQUE:
                    entry = Entry(parent, "opaque", idx)
                elif base.startswith(".wh..wh."):
                    continue  # AUFS bookkeeping (.wh..wh.plnk): never a deletion
                else:
                    entry = Entry(posixpath.join(parent, base[len(WHITEOUT) :]), "whiteout", idx)
                entries.append(entry)
                if inspector:
                    inspector.visit(entry, b"", True)
                continue
            if kind == "char" and m.devmajor == 0 and m.devminor == 0:
                # overlayfs-style whiteout (a 0/0 character device) left in a layer tar:
                # applied onto overlayfs it deletes just like a .wh. file.
                entry = Entry(path, "whiteout", idx)
                entries.append(entry)
                continue
            entry = Entry(
                path,
                kind if kind != "sparse" else "file",
                idx,
                size=m.size,
                mode=m.mode,
                uid=m.uid,
                gid=m.gid,
                mtime=m.mtime,
                link=m.linkname,
            )
            if path in seen:
                counter.hit(
                    "image.archive.duplicate_member",
                    f"layer {idx} writes {path} more than once; the last copy wins",
                    path=path,
                )
            if kind in ("char", "block") and (
                kind != "char" or STANDARD_DEVICES.get(path) != (m.devmajor, m.devminor)
            ):
                counter.hit(
                    "image.archive.device_node",
                    f"{kind} device {m.devmajor}:{m.devminor} in a layer",
                    path=path,
                    evidence=(f"{kind} {m.devmajor}:{m.devminor}",),
                )
            elif kind == "symlink" and link_escapes(path, m.linkname):
                counter.hit(
                    "image.archive.link_outside",
                    f"symlink {path} -> {m.linkname[:300]!r} climbs above the root",
                    path=path,
                    evidence=(repr(m.linkname[:300]),),
                )
            elif kind == "hardlink":
                target, _abs, t_dotdot = member_path(m.linkname)
                entry.link = target
                src = seen.get(target)
                if src is None or t_dotdot:
                    counter.hit(
                        "image.archive.hardlink_outside",
                        f"hardlink {path} -> {m.linkname[:300]!r} names no earlier member of"
                        " its layer",
                        path=path,
                        evidence=(repr(m.linkname[:300]),),
                    )
                else:
                    links.append((entry, src))
                    entry.is_elf, entry.is_script = src.is_elf, src.is_script
                    entry.is_text = src.is_text
                    entry.needles_found = src.needles_found
                    entry.size = src.size
            elif kind == "sparse":
                counter.notes.caveat(
                    "sparse-member",
                    f"layer {idx}: {path} is a GNU sparse member; its hash"
                    " covers the stored data only",
                )
            if entry.kind == "file":
                _hash_file(walker, entry, inspector, hasher)
            elif inspector:
                inspector.visit(entry, b"", True)
            seen[path] = entry
            entries.append(entry)
    except TarError as exc:
        counter.notes.hit(
            "image.archive.corrupt_layer",
            f"layer {idx}: {exc}; members after it were hashed but not analysed",
            layer=idx,
        )
        return False
    if walker.truncated:
        counter.notes.hit("image.archive.corrupt_layer", f"layer {idx} is truncated", layer=idx)
        return False
    return True


# Files at least this big are hashed on the helper thread; smaller ones inline (their
# updates hold the GIL anyway, and queueing costs more than hashing them).
OFFLOAD_BYTES = 256 << 10


def _hash_file(
    walker: TarWalker,
    entry: Entry,
    inspector: Inspector | None,
    hasher: FileHasher,
) -> None:
    h = hashlib.sha256()
    md5 = sha1 = None
    verify_all = walker.verify_all
    plan = NO_PLAN
    want = 0
    parts: list[bytes] = []
    got = 0
    first = True
    needles: tuple[bytes, ...] = ()
    found: dict[bytes, int] = {}
    carry = b""
    offset = 0
    offload = entry.size >= OFFLOAD_BYTES
    hashers: tuple[Any, ...] = (h,)
    for chunk in walker.chunks():
        if first:
            first = False
            head4 = bytes(chunk[:4])
            entry.is_elf = head4 == ELF_MAGIC
            entry.is_script = head4[:2] == b"#!"
            entry.is_text = not entry.is_elf and b"\0" not in bytes(chunk[:1024])
            if entry.mode & 0o7111 or verify_all:
                # dpkg records md5, apk sha1. Computing them for every file would double the
                # hashing cost, so by default only executables (what a trojan replaces) get
                # them; Limits.verify_all_digests extends the check to every file.
                md5 = hashlib.md5(usedforsecurity=False)
                sha1 = hashlib.sha1(usedforsecurity=False)
                hashers = (h, md5, sha1)
            if inspector:
                plan = inspector.plan(entry)
                want = plan.want
                needles = plan.needles
        if offload:
            hasher.update(hashers, chunk)
        else:
            for x in hashers:
                x.update(chunk)
        if needles:
            # Searched in place in the walker's buffer (no copy of the chunk). A needle may
            # straddle two chunks: the previous chunk's tail is searched with the first
            # len(needle) - 1 bytes of this one, which finds exactly the occurrences that
            # start in the tail (an earlier occurrence than any inside this chunk).
            buf, start = walker.chunk_origin()
            end = start + len(chunk)
            for n in needles:
                if n in found:
                    continue
                if carry:
                    pos = (carry + buf[start : min(end, start + len(n) - 1)]).find(n)
                    if pos >= 0:
                        found[n] = offset - len(carry) + pos
                        continue
                pos = buf.find(n, start, end)
                if pos >= 0:
                    found[n] = offset + pos - start
            keep = max(len(n) for n in needles) - 1
            if keep:
                tail = buf[max(start, end - keep) : end]
                carry = (carry + tail)[-keep:] if len(tail) < keep else tail
            offset += len(chunk)
            if len(found) == len(needles):
                needles = ()
        if got < want:
            piece = bytes(chunk[: want - got])
            parts.append(piece)
            got += len(piece)
    if first:  # an empty file
        entry.is_text = True
        if entry.mode & 0o7111:
            md5 = hashlib.md5(usedforsecurity=False)
            sha1 = hashlib.sha1(usedforsecurity=False)
        if inspector:
            plan = inspector.plan(entry)
    if found:
        entry.needles_found = tuple(sorted(found.items(), key=lambda x: x[1]))

    def done() -> None:
        entry.sha256 = h.hexdigest()
        if md5 is not None and sha1 is not None:
            entry.md5 = md5.hexdigest()
            entry.sha1 = sha1.hexdigest()

    if offload:
        hasher.finish(done)  # entry digests are set when the layer's hashing is drained
    else:
        done()
    if inspector:
        data = b"".join(parts)
        inspector.visit(entry, data, complete=len(data) >= entry.size)
