"""The byte pipeline under every layer: raw blob -> digest -> decompress -> diff_id -> tar.

Compression is sniffed from magic bytes, never from names or media types (image-formats.md):
``1f 8b`` gzip, ``28 b5 2f fd`` zstd, ``ustar`` at offset 257 for plain tar. Whole-blob
hashes run on a helper thread: ``hashlib`` releases the GIL for large updates, so the blob
digest and the diff_id cost almost nothing next to the per-file hashing on the main thread.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import zlib
from collections.abc import Callable
from typing import IO, Any, Protocol

import zstandard

CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class DecompressionBomb(Exception):  # noqa: N818 - the domain's word
    """The stream inflated past its allowance."""


class CorruptStream(Exception):  # noqa: N818
    """The compressed stream is damaged or truncated."""


def sniff(head: bytes) -> str:
    """Name the container format of ``head`` (at least 512 bytes when available)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    # An empty layer is 1024 zero bytes; v7 tars have no magic but a valid header checksum.
    if len(head) >= 512 and (not head[:512].strip(b"\0") or _v7_checksum_ok(head[:512])):
        return "tar"
    return "unknown"


def _v7_checksum_ok(block: bytes) -> bool:
    try:
        want = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    got = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return want == got


class BackgroundHash:
    """sha256 of a byte stream computed on a helper thread (bounded queue, so memory stays
    bounded and a slow hasher back-pressures the reader)."""

    _STOP = b""

    def __init__(self, name: str = "sha256") -> None:
        self._h = hashlib.new(name)
        self._q: queue.Queue[bytes] = queue.Queue(maxsize=16)
        self._t = threading.Thread(target=self._run, name="podmortem-hash", daemon=True)
        self._t.start()
        self._done = False
        self.size = 0

    def _run(self) -> None:
        while True:
            b = self._q.get()
            if not b:
                return
            self._h.update(b)

    def update(self, data: bytes) -> None:
        if data:
            self.size += len(data)
            self._q.put(data)

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._q.put(self._STOP)
            self._t.join()


class FileHasher:
    """Hashes the content of big files on a helper thread, in order, while the main thread
    goes on parsing the tar (hashlib releases the GIL on large updates). ``done`` callbacks
    run on the helper thread after a file's last chunk; :meth:`close` waits for all."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[tuple[Any, ...], Any, Callable[[], None] | None] | None] = (
            queue.Queue(maxsize=64)
        )
        self._t = threading.Thread(target=self._run, name="podmortem-filehash", daemon=True)
        self._t.start()
        self._closed = False

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            hashers, chunk, done = item
            if done is not None:
                done()
                continue
            for h in hashers:
                h.update(chunk)

    def update(self, hashers: tuple[Any, ...], chunk: Any) -> None:
        self._q.put((hashers, chunk, None))

    def finish(self, done: Callable[[], None]) -> None:
        self._q.put(((), None, done))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(None)
            self._t.join()


class HashingReader:
    """Reads from ``raw``, feeding every byte to a background hash; counts bytes."""

    def __init__(self, raw: Readable, limit: int | None = None) -> None:
        self._raw = raw
        self.hash = BackgroundHash()
        self._limit = limit

    def read(self, n: int = -1, /) -> bytes:
        if self._limit is not None:
            left = self._limit - self.hash.size
            if left <= 0:
                return b""
            n = left if n < 0 else min(n, left)
        b = self._raw.read(n)
        self.hash.update(b)
        return b

    @property
    def size(self) -> int:
        return self.hash.size


class _GzipReader:
    """Multi-member gzip (pigz and some builders concatenate members) via zlib; trailing
    zero padding after the last member is common and harmless."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._eof = False

    def read(self, n: int = -1, /) -> bytes:
        n = CHUNK if n < 0 else n
        while not self._eof:
            if self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self._raw.read(CHUNK)
                if not data:
                    if not self._d.eof:
                        raise CorruptStream("gzip stream is truncated")
                    self._eof = True
                    break
            if self._d.eof:
                if not data.strip(b"\0"):
                    continue  # padding after the last member
                self._d = zlib.decompressobj(wbits=31)  # the next member
            try:
                out = self._d.decompress(data, n)
            except zlib.error as exc:
                raise CorruptStream(f"gzip stream is damaged: {exc}") from exc
            if self._d.eof and self._d.unused_data:
                self._pending = self._d.unused_data
            if out:
                return out
        return b""


class _ZstdReader:
    def __init__(self, raw: Readable) -> None:
        # zstandard only calls read() on its source; any Readable will do.
        self._r = zstandard.ZstdDecompressor().stream_reader(
            raw,  # type: ignore[arg-type]
            read_size=CHUNK,
            read_across_frames=True,
        )

    def read(self, n: int = -1, /) -> bytes:
        try:
            return bytes(self._r.read(CHUNK if n < 0 else n))
        except zstandard.ZstdError as exc:
            raise CorruptStream(f"zstd stream is damaged: {exc}") from exc


class _Prefixed:
    """Gives back the bytes consumed while sniffing."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1, /) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                h, self._head = self._head, b""
                return h
            h, self._head = self._head[:n], self._head[n:]
            return h
        return self._raw.read(n)


class BoundedReader:
    """Stops a decompressed stream past ``allowance`` bytes (a decompression bomb)."""

    def __init__(self, raw: Readable, allowance: int) -> None:
        self._raw = raw
        self.allowance = allowance
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        b = self._raw.read(n)
        self.count += len(b)
        if self.count > self.allowance:
            raise DecompressionBomb(
                f"decompressed stream passed its allowance of {self.allowance} bytes"
            )
        return b


def read_exact(src: Readable, n: int) -> bytes:
    parts = []
    while n > 0:
        b = src.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def open_layer(raw: Readable) -> tuple[str, Readable]:
    """Sniff ``raw`` and return ``(compression, reader of the uncompressed bytes)``.

    Unknown, bzip2 and xz streams are returned with their name and an empty reader: the
    caller reports them and never parses bytes it cannot identify."""
    head = read_exact(raw, 512)
    kind = sniff(head)
    src = _Prefixed(head, raw)
    if kind == "gzip":
        return kind, _GzipReader(src)
    if kind == "zstd":
        return kind, _ZstdReader(src)
    if kind == "tar":
        return kind, src
    if not head:
        return "empty", src
    return kind, _Prefixed(b"", _Empty())


class _Empty:
    def read(self, n: int = -1, /) -> bytes:
        return b""


def file_region(fh: IO[bytes], offset: int, size: int) -> Readable:
    """A reader over ``size`` bytes at ``offset`` of an open file (a member of an outer tar).

    Uses ``os.pread`` so several regions of one file never fight over the file position."""
    return _Region(fh, offset, size)


class _Region:
    def __init__(self, fh: IO[bytes], offset: int, size: int) -> None:
        import os

        self._fd = fh.fileno()
        self._pos = offset
        self._end = offset + size
        self._pread = os.pread

    def read(self, n: int = -1, /) -> bytes:
        left = self._end - self._pos
        if left <= 0:
            return b""
        n = left if n < 0 else min(n, left)
        b = self._pread(self._fd, n, self._pos)
        self._pos += len(b)
        return b
