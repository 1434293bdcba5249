"""A streaming tar reader for layer tars: one forward pass, no seeking, nothing on disk.

Why not ``tarfile``: layers are hostile input and the hot path of the analysis. This reader
bounds every header it buffers (GNU long names and pax records are attacker-sized), hands
member content out as zero-copy slices of a 1 MiB buffer (so per-file hashing releases the
GIL and runs at hashlib speed), and never creates anything from a member. It understands
ustar, GNU (``L``/``K`` long names, base-256 numbers) and pax (``x``/``g``) headers, which
is everything Docker, BuildKit, buildah, containerd and Go's archive/tar write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from zlib import adler32

from podmortem.image.stream import CHUNK, Readable

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)

_TYPES = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",  # contiguous file: a regular file for every practical purpose
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
    b"S": "sparse",
}


class TarError(Exception):
    """A header that cannot be parsed: the rest of the layer cannot be trusted."""


@dataclass(slots=True)
class TarMember:
    name: str
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    offset: int = 0  # of the header block within the uncompressed layer tar
    xattrs: dict[str, str] = field(default_factory=dict)
    typeflag: str = ""


def _num(field_: bytes) -> int:
    if field_ and field_[0] & 0x80:
        # GNU base-256: big-endian two's complement, first byte's high bit is the marker.
        if field_[0] == 0xFF:
            raise TarError("negative base-256 number in header")
        n = field_[0] & 0x7F
        for b in field_[1:]:
            n = (n << 8) | b
        return n
    s = field_.split(b"\0", 1)[0].strip()
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError as exc:
        raise TarError(f"bad octal number {s[:20]!r} in header") from exc


def _text(field_: bytes) -> str:
    return field_.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _checksum_ok(block: bytes) -> bool:
    try:
        want = _num(block[148:156])
    except TarError:
        return False
    # the checksum field itself counts as eight spaces. The byte sum comes from Adler-32's
    # A half (1 + sum mod 65521) over two 256-byte halves: each half sums to at most 65280,
    # so nothing wraps and the sum is exact, at C speed (sum() over 512 ints costs ~10 us,
    # twice per member).
    total = (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:BLOCK]) & 0xFFFF) - 2
    unsigned = total - sum(block[148:156]) + 256
    if want == unsigned:
        return True
    signed = sum((b ^ 0x80) - 0x80 for b in block[:148] + block[156:]) + 256
    return want == signed


def _pax_number(pax: dict[str, str], key: str, field_: bytes) -> int:
    if key in pax:
        try:
            return int(float(pax[key]))
        except ValueError as exc:
            raise TarError(f"bad pax {key}") from exc
    return _num(field_)


def parse_pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError as exc:
            raise TarError("malformed pax record") from exc
        if length <= 0 or pos + length > len(data):
            raise TarError("malformed pax record length")
        rec = data[sp + 1 : pos + length - 1]
        key, _, value = rec.partition(b"=")
        out[key.decode("utf-8", "backslashreplace")] = value.decode("utf-8", "backslashreplace")
        pos += length
    return out


class TarWalker:
    """Iterate the members of a tar stream; read each member's content with :meth:`chunks`
    before advancing (unread content is skipped). After iteration, ``ended_cleanly`` says
    whether the end-of-archive marker was seen and ``trailing`` how many bytes followed it."""

    def __init__(self, src: Readable, *, max_header_bytes: int = 1 << 20) -> None:
        self._src = src
        self._buf = b""
        self._pos = 0
        self.offset = 0  # bytes consumed from the stream
        self._left = 0  # unread content bytes of the current member
        self._pad = 0
        self._max_header = max_header_bytes
        self.ended_cleanly = False
        self.truncated = False
        self.global_pax: dict[str, str] = {}
        self.verify_all = False  # read by the layer reader: md5/sha1 for every file
        self.chunk_at = 0

    # -- buffer -----------------------------------------------------------------------

    def _read_exact(self, n: int) -> bytes:
        avail = len(self._buf) - self._pos
        if avail >= n:
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
            self.offset += n
            return out
        parts = [self._buf[self._pos :]]
        need = n - avail
        self._buf, self._pos = b"", 0
        while need > 0:
            b = self._src.read(max(CHUNK, need))
            if not b:
                break
            if len(b) > need:
                parts.append(b[:need])
                self._buf, self._pos = b, need
                need = 0
            else:
                parts.append(b)
                need -= len(b)
        out = b"".join(parts)
        self.offset += len(out)
        return out

    def _skip(self, n: int) -> int:
        skipped = 0
        while n > 0:
            avail = len(self._buf) - self._pos
            if not avail:
                self._buf, self._pos = self._src.read(CHUNK), 0
                if not self._buf:
                    break
                continue
            k = min(avail, n)
            self._pos += k
            n -= k
            skipped += k
        self.offset += skipped
        return skipped

    def chunk_origin(self) -> tuple[bytes, int]:
        """The buffer the last chunk is a slice of, and where in it the chunk starts (lets
        ``bytes.find`` search a chunk in place, without copying it)."""
        return self._buf, self.chunk_at

    def chunks(self) -> Iterator[memoryview]:
        """The current member's content, as slices that are valid until the next chunk."""
        while self._left > 0:
            avail = len(self._buf) - self._pos
            if not avail:
                self._buf, self._pos = self._src.read(CHUNK), 0
                if not self._buf:
                    self.truncated = True
                    self._left = 0
                    return
                continue
            k = min(avail, self._left)
            self.chunk_at = self._pos
            mv = memoryview(self._buf)[self._pos : self._pos + k]
            self._pos += k
            self._left -= k
            self.offset += k
            yield mv

    def drain(self) -> int:
        """Read (and so hash) everything after the end marker; returns the byte count."""
        n = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while True:
            b = self._src.read(CHUNK)
            if not b:
                return n
            n += len(b)

    # -- members ----------------------------------------------------------------------

    def _data(self, size: int, what: str) -> bytes:
        if size > self._max_header:
            raise TarError(f"{what} of {size} bytes exceeds the {self._max_header}-byte bound")
        data = self._read_exact(size)
        self._skip(-size % BLOCK)
        if len(data) < size:
            raise TarError(f"{what} is truncated")
        return data

    def __iter__(self) -> Iterator[TarMember]:
        long_name: str | None = None
        long_link: str | None = None
        pax: dict[str, str] = {}
        while True:
            if self._left or self._pad:
                if self._skip(self._left) < self._left:
                    self.truncated = True
                    return
                self._left = 0
                self._skip(self._pad)
                self._pad = 0
            header_at = self.offset
            block = self._read_exact(BLOCK)
            if len(block) < BLOCK:
                self.truncated = bool(block) or header_at > 0
                return
            if block == _ZERO_BLOCK:
                self.ended_cleanly = True
                return
            if not _checksum_ok(block):
                raise TarError(f"bad header checksum at offset {header_at}")
            flag = block[156:157]
            size = _num(block[124:136])
            if flag in (b"L", b"K"):
                text = self._data(size, "GNU long name").split(b"\0", 1)[0]
                value = text.decode("utf-8", "backslashreplace")
                if flag == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            if flag in (b"x", b"g"):
                records = parse_pax(self._data(size, "pax header"))
                if flag == b"g":
                    self.global_pax.update(records)
                else:
                    pax.update(records)
                continue
            name = _text(block[0:100])
            if block[257:262] == b"ustar":
                prefix = _text(block[345:500])
                if prefix and block[257:263] == b"ustar\0":  # POSIX ustar prefix field
                    name = prefix + "/" + name
            merged = {**self.global_pax, **pax} if self.global_pax else pax
            name = merged.get("path", long_name if long_name is not None else name)
            link = merged.get(
                "linkpath", long_link if long_link is not None else _text(block[157:257])
            )
            if "size" in merged:
                try:
                    size = int(merged["size"])
                except ValueError as exc:
                    raise TarError("bad pax size") from exc
            kind = _TYPES.get(flag, "other")
            member = TarMember(
                name=name,
                type=kind,
                size=size,
                mode=_num(block[100:108]) & 0o7777,
                uid=_pax_number(merged, "uid", block[108:116]),
                gid=_pax_number(merged, "gid", block[116:124]),
                mtime=float(_pax_number(merged, "mtime", block[136:148])),
                linkname=link,
                devmajor=_num(block[329:337]) if kind in ("char", "block") else 0,
                devminor=_num(block[337:345]) if kind in ("char", "block") else 0,
                offset=header_at,
                xattrs={k[13:]: v for k, v in merged.items() if k.startswith("SCHILY.xattr.")}
                if merged
                else {},
                typeflag=flag.decode("latin-1"),
            )
            long_name = long_link = None
            pax = {}
            # Links, dirs and devices carry no data even when a hostile header says otherwise
            # (tar readers ignore it too); everything else is followed by its content.
            self._left = size if kind in ("file", "sparse", "other") else 0
            self._pad = -self._left % BLOCK
            yield member
